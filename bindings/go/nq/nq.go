// Package nq gives Go programs network queues on libnq: Put(data, peers...)
// returns a Future, Get(ctx) blocks until a message arrives.  A communicator
// is a server (many clients) or a client (one server); peers are named by
// an ID (a UUID).  The wire protocol is net-queue's, so nq talks to libnq
// peers in any language and to net-queue itself.
//
//	server, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: "127.0.0.1:0"})
//	...
//	msg, err := server.Get(ctx)
//	err = server.Put([]byte("hello"), msg.Peer).Wait(ctx)
//
// All methods of a Communicator are safe for concurrent use.
package nq

import (
	"context"
	"crypto/tls"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/cgo"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/libnq/libnq/bindings/go/nq/internal/nqraw"
)

// Protocol selects the transport.
type Protocol int

// The transports (nq_protocol).
const (
	TCP  Protocol = 0 // TCP, with TLS when Options.TLS is set
	MQTT Protocol = 1 // MQTT through a broker (Options.Addr is the broker)
	GRPC Protocol = 2 // gRPC bidirectional stream
)

// Purpose selects the role.
type Purpose int

// The roles (nq_purpose).
const (
	Client Purpose = 0 // connects to one server
	Server Purpose = 1 // accepts many clients
)

// TLS turns TLS on.  A server gives KeyFile and CertFile (PEM key and
// certificate chain); a client gives only CertFile, the PEM certificates it
// trusts, or nothing to trust the system's store.
//
// Client certificates (libnq >= 1.3 over TCP, 1.4 over MQTT and gRPC; a
// transport returns ErrNotSupported for what it cannot use): a client given a KeyFile presents KeyFile and CertFile
// (its own chain) when the server asks, and trusts CAFile, CADir and CAPEM
// (else the system's store); CertFile is the client's trust only without a
// KeyFile.  A server checks client certificates as ClientAuth says,
// against CAFile, CADir and CAPEM.  Communicator.PeerIdentity tells what a
// peer presented; a refused client's Get, futures and Close return ErrAuth.
type TLS struct {
	KeyFile  string
	CertFile string

	// KeyPEM and CertPEM are this side's key and chain as PEM text instead
	// of files (a secret from the environment, never written to disk), in
	// either role.  They go together and replace KeyFile and CertFile.
	KeyPEM  string
	CertPEM string

	// The trust anchors, any of them: a PEM file, a directory hashed by
	// `openssl rehash`, PEM text.  A client checks its server against
	// them, a server its clients' certificates.
	CAFile string
	CADir  string
	CAPEM  string

	ClientAuth ClientAuth // server: whether clients present certificates
	MinVersion uint16     // tls.VersionTLS12 or tls.VersionTLS13; zero: TLS 1.2

	// ServerName is the name a client expects in the server's certificate
	// and sends as SNI (gRPC's :authority too) when it is not the host
	// connected to (libnq >= 1.4).
	ServerName string
	// ALPN lists the protocols offered to an MQTT broker
	// ([]string{"x-amzn-mqtt-ca"} for AWS IoT Core on port 443).
	ALPN []string
	// Token is a gRPC client's bearer token, sent with every call
	// (Options.Secret, when set, gives it instead).  A server that does not
	// accept it refuses the client: ErrAuth.
	Token string
	// AcceptTokens maps the bearer tokens a gRPC server accepts to the
	// identity of their clients; once it has any, a client without one of
	// them is refused, and PeerIdentity names an accepted client
	// "token:<identity>".
	AcceptTokens map[string]string
}

// Login is an MQTT broker login (libnq >= 1.4), sent by either role.  The
// password travels in clear text unless TLS is on; an empty Password sends
// none (or Options.Secret's).
type Login struct {
	User     string
	Password string
}

// ClientAuth tells a TLS server whether clients present certificates.
type ClientAuth int

// The client certificate policies (NQ_OPT_TLS_CLIENT_AUTH).
const (
	ClientCertNone     ClientAuth = 0 // not asked (net-queue's behaviour)
	ClientCertOptional ClientAuth = 1 // a certificate shown must verify; a client without one is served
	ClientCertRequired ClientAuth = 2 // a client without a trusted certificate is refused
)

// Options configure Open.  The zero value of every field keeps libnq's
// default (net-queue's, where net-queue has the setting).
type Options struct {
	ID   ID     // this communicator's identity; zero: a random one
	Addr string // "host:port"; "": 127.0.0.1:51966; a server on port 0 binds a free port (see LocalPort)
	TLS  *TLS   // nil: plain TCP

	Workers       int   // server I/O threads (1..64)
	EfficientSize int64 // pieces shorter than this may be copied together (see NQ_OPT_EFFICIENT_SIZE)
	ProtocolSize  int64 // largest piece handed to the transport at once
	QueueSize     int64 // undelivered messages held per peer before reading pauses
	DropOldest    bool  // at QueueSize drop the peer's oldest waiting message instead of pausing (libnq >= 1.3)
	MessageSize   int64 // largest message accepted
	SendLimit     int64 // bytes of copied puts that may wait
	NoPutMerge    bool  // hand every piece to the transport as it is (NQ_OPT_PUT_MERGE 0)

	HandshakeTimeout time.Duration // a connection must finish TLS and INI within this
	KeepAlive        time.Duration // idle time before keep-alive probes; negative disables them
	CloseTimeout     time.Duration // bounds Close's handshake; zero waits as long as it takes

	MQTTQoS    *int   // MQTT publish and subscribe QoS (default 1)
	MQTTPrefix string // MQTT topic prefix

	// Credentials (libnq >= 1.4); a transport that cannot use one makes
	// Open return ErrNotSupported, and credentials the other side refuses
	// end the attempt with ErrAuth.
	Login          *Login // MQTT: the broker login
	MQTTClientID   string // MQTT: the client id given to the broker instead of the id in hex
	MQTTMaxPublish int64  // MQTT: the largest publish the broker takes (1024 to 2^28); zero: libnq's
	// Secret, when set, gives the MQTT password (with Login.User) or the
	// gRPC token for every connection attempt, so that an expiring secret
	// is renewed in time; it replaces Login.Password or TLS.Token.  It
	// runs on a thread of libnq's or the MQTT library's, must return
	// quickly and must not use the communicator.  An error or a panic
	// fails the attempt with ErrAuth (log it in the function if it
	// matters); the function is kept until the communicator is freed.
	Secret func() (string, error)

	// Client reconnection (libnq >= 1.1), off while Reconnect is zero: the
	// first delay before connecting again after a loss or a failed
	// connect, the longest delay (zero: libnq's 5 s), and how long to keep
	// trying (zero: forever).  Meanwhile Put queues and Get waits.
	Reconnect       time.Duration
	ReconnectMax    time.Duration
	ReconnectGiveUp time.Duration

	// Acknowledged delivery (libnq >= 1.2), between libnq peers that both
	// ask for it over TCP or TLS: a Put's future completes when the peer
	// has the message, and a reconnecting client's session goes on where
	// it stopped, nothing lost or repeated; with anyone else, net-queue's
	// meaning.  Resume is how long a server keeps a lost peer's session
	// for its return (zero: libnq's 60 s).
	Acknowledged bool
	Resume       time.Duration

	// Events, when not nil, receives every peer event in order (Connected,
	// then at most one Disconnected per connection); Close closes it once
	// the last one is sent.  Keep it drained: a full channel holds the
	// events behind it back (never libnq's I/O).
	Events chan<- Event
}

// EventType tells what happened to a peer.
type EventType int

// The peer events (nq_event_type).
const (
	Connected    EventType = 1 // the peer introduced itself
	Disconnected EventType = 2 // the peer is gone; Event.Reason says how
	// Reconnecting: a client will connect again (Options.Reconnect); Peer
	// is the last server it knew (zero before the first), Reason why the
	// last connection or attempt ended.
	Reconnecting EventType = 3
)

// Event is one peer event.
type Event struct {
	Type EventType
	Peer ID
	// Reason is nil when a Disconnected peer closed cleanly, else how its
	// connection ended: ErrClosed (our Close dropped it), ErrConnectionReset
	// (lost), ErrReplaced (it connected again with its id), ...
	Reason error
}

// Message is one received message.
type Message struct {
	Peer ID     // the sender
	Data []byte // the payload (owned by the receiver)
}

// Communicator is an open server or client.  Close it when done: that
// flushes queued puts and runs the close handshake; its memory is freed once
// it is closed and unreachable.
type Communicator struct {
	raw     nqraw.Comm
	id      ID
	done    nqraw.Completions
	tokens  atomic.Int64
	pmu     sync.Mutex
	pending map[int64]*pendingPut

	resolved  chan struct{} // closed when the resolver goroutine has ended
	events    nqraw.Events  // nil without Options.Events
	secret    cgo.Handle    // Options.Secret as libnq calls it; zero without one
	delivered chan struct{} // closed when the events goroutine has ended
	closeOnce sync.Once
	closeErr  error
}

// pendingPut keeps a put's data pinned (libnq reads it in place) until
// libnq reports the put complete.
type pendingPut struct {
	future *Future
	pinner runtime.Pinner
}

// pickyRecheck is how soon GetFrom looks again while other peers' messages
// keep the readiness descriptor readable.
const pickyRecheck = 5 * time.Millisecond

func millis(d time.Duration) int64 {
	return int64(math.Ceil(float64(d) / float64(time.Millisecond)))
}

// setTLS turns TLS on in ro as t says (see TLS).
func setTLS(ro nqraw.Opts, t *TLS, purpose Purpose) error {
	var rc int
	switch {
	case t.KeyPEM != "" || t.CertPEM != "":
		if t.KeyFile != "" || t.CertFile != "" {
			return ErrInvalid
		}
		rc = ro.Set_tls_identity(t.KeyPEM, t.CertPEM, true)
	case t.KeyFile != "" && purpose == Client:
		rc = ro.Set_tls_identity(t.KeyFile, t.CertFile, false)
	default:
		rc = ro.Set_tls(t.KeyFile, t.CertFile)
	}
	if err := check(rc); err != nil {
		return err
	}
	if t.CAFile != "" || t.CADir != "" || t.CAPEM != "" {
		if err := check(ro.Set_tls_trust(t.CAFile, t.CADir, t.CAPEM)); err != nil {
			return err
		}
	}
	if t.ClientAuth != ClientCertNone {
		if err := check(ro.Set_int(int(nqraw.NQ_OPT_TLS_CLIENT_AUTH), int64(t.ClientAuth))); err != nil {
			return err
		}
	}
	var version int64 // libnq's spelling of MinVersion
	switch t.MinVersion {
	case 0:
		return nil
	case tls.VersionTLS12:
		version = 12
	case tls.VersionTLS13:
		version = 13
	default:
		return ErrInvalid
	}
	return check(ro.Set_int(int(nqraw.NQ_OPT_TLS_MIN_VERSION), version))
}

// setCredentials sets o's logins, tokens and names (libnq >= 1.4) in ro.
func setCredentials(ro nqraw.Opts, o *Options) error {
	var rcs []int
	if o.Login != nil {
		rcs = append(rcs, ro.Set_login(o.Login.User, o.Login.Password))
	}
	if o.MQTTClientID != "" {
		rcs = append(rcs, ro.Set_mqtt_client_id(o.MQTTClientID))
	}
	if t := o.TLS; t != nil {
		if t.ServerName != "" {
			rcs = append(rcs, ro.Set_tls_server_name(t.ServerName))
		}
		if t.ALPN != nil {
			for _, name := range t.ALPN {
				if name == "" || strings.Contains(name, ",") {
					return ErrInvalid
				}
			}
			rcs = append(rcs, ro.Set_tls_alpn(strings.Join(t.ALPN, ",")))
		}
		if t.Token != "" {
			rcs = append(rcs, ro.Set_token(t.Token))
		}
		for token, identity := range t.AcceptTokens {
			rcs = append(rcs, ro.Accept_token(token, identity))
		}
	}
	for _, rc := range rcs {
		if err := check(rc); err != nil {
			return err
		}
	}
	return nil
}

func buildOptions(o *Options, purpose Purpose) (nqraw.Opts, error) {
	ro := nqraw.NewOpts()
	fail := func(err error) (nqraw.Opts, error) {
		nqraw.DeleteOpts(ro)
		return nil, err
	}
	if err := check(ro.Status()); err != nil {
		return fail(err)
	}
	if o == nil {
		return ro, nil
	}
	if !o.ID.IsZero() {
		// A copy of its own: cgo refuses memory that holds Go pointers (the
		// rest of *o), and the id must not be such memory.
		id := new(ID)
		*id = o.ID
		if err := check(ro.Set_id(id[:])); err != nil {
			return fail(err)
		}
	}
	if o.Addr != "" {
		host, port, err := net.SplitHostPort(o.Addr)
		if err != nil {
			return fail(ErrInvalid)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fail(ErrInvalid)
		}
		if err := check(ro.Set_netloc(host, p)); err != nil {
			return fail(err)
		}
	}
	if o.TLS != nil {
		if err := setTLS(ro, o.TLS, purpose); err != nil {
			return fail(err)
		}
	}
	if err := setCredentials(ro, o); err != nil {
		return fail(err)
	}
	ints := []struct {
		option nqraw.Nq_option
		value  int64
		set    bool
	}{
		{nqraw.NQ_OPT_WORKERS, int64(o.Workers), o.Workers != 0},
		{nqraw.NQ_OPT_EFFICIENT_SIZE, o.EfficientSize, o.EfficientSize != 0},
		{nqraw.NQ_OPT_PROTOCOL_SIZE, o.ProtocolSize, o.ProtocolSize != 0},
		{nqraw.NQ_OPT_QUEUE_SIZE, o.QueueSize, o.QueueSize != 0},
		{nqraw.NQ_OPT_MESSAGE_SIZE, o.MessageSize, o.MessageSize != 0},
		{nqraw.NQ_OPT_SEND_LIMIT, o.SendLimit, o.SendLimit != 0},
		{nqraw.NQ_OPT_PUT_MERGE, 0, o.NoPutMerge},
		{nqraw.NQ_OPT_HANDSHAKE_TIMEOUT_MS, millis(o.HandshakeTimeout), o.HandshakeTimeout != 0},
		{nqraw.NQ_OPT_KEEPALIVE_MS, max(0, millis(o.KeepAlive)), o.KeepAlive != 0},
		{nqraw.NQ_OPT_CLOSE_TIMEOUT_MS, millis(o.CloseTimeout), o.CloseTimeout > 0},
		{nqraw.NQ_OPT_RECONNECT_MS, millis(o.Reconnect), o.Reconnect > 0},
		{nqraw.NQ_OPT_RECONNECT_MAX_MS, millis(o.ReconnectMax), o.ReconnectMax > 0},
		{nqraw.NQ_OPT_RECONNECT_GIVE_UP_MS, millis(o.ReconnectGiveUp), o.ReconnectGiveUp > 0},
		{nqraw.NQ_OPT_DELIVERY, int64(nqraw.NQ_DELIVERY_ACKED), o.Acknowledged},
		{nqraw.NQ_OPT_RESUME_MS, millis(o.Resume), o.Resume > 0},
		{nqraw.NQ_OPT_DROP_OLDEST, 1, o.DropOldest},
		{nqraw.NQ_OPT_MQTT_MAX_PUBLISH, o.MQTTMaxPublish, o.MQTTMaxPublish != 0},
	}
	if o.MQTTQoS != nil {
		ints = append(ints, struct {
			option nqraw.Nq_option
			value  int64
			set    bool
		}{nqraw.NQ_OPT_MQTT_QOS, int64(*o.MQTTQoS), true})
	}
	for _, opt := range ints {
		if !opt.set {
			continue
		}
		if err := check(ro.Set_int(int(opt.option), opt.value)); err != nil {
			return fail(err)
		}
	}
	if o.MQTTPrefix != "" {
		if err := check(ro.Set_mqtt_prefix(o.MQTTPrefix)); err != nil {
			return fail(err)
		}
	}
	return ro, nil
}

// deliver sends the events libnq reports to out, in order, until Close;
// then it closes out.
func (c *Communicator) deliver(out chan<- Event) {
	defer close(c.delivered)
	defer close(out)
	ev := nqraw.NewEvent()
	defer nqraw.DeleteEvent(ev)
	for {
		rc := c.events.Next(-1, ev)
		if rc == nqraw.NQ_ECLOSED {
			return
		}
		if rc != nqraw.NQ_OK {
			continue
		}
		out <- Event{Type: EventType(ev.Kind()), Peer: idFromBytes(ev.Peer()),
			Reason: check(ev.Reason())}
	}
}

// Open opens a communicator; opts may be nil for the defaults.  It never
// blocks on the network (except MQTT, which waits for the broker): a server
// binds before Open returns, a client connects in the background and
// reports a failure through its futures and Get.
func Open(protocol Protocol, purpose Purpose, opts *Options) (*Communicator, error) {
	ro, err := buildOptions(opts, purpose)
	if err != nil {
		return nil, err
	}
	defer nqraw.DeleteOpts(ro)
	var events nqraw.Events
	if opts != nil && opts.Events != nil {
		events = nqraw.NewEvents()
		if err := check(ro.Set_events(events)); err != nil {
			nqraw.DeleteEvents(events)
			return nil, err
		}
	}
	// libnq calls the secret through this handle until the communicator
	// is destroyed, which deletes it.
	var secret cgo.Handle
	if opts != nil && opts.Secret != nil {
		secret = cgo.NewHandle(nqraw.SecretFunc(opts.Secret))
		if err := check(ro.Set_secret(uint(secret))); err != nil {
			secret.Delete()
			if events != nil {
				nqraw.DeleteEvents(events)
			}
			return nil, err
		}
	}
	raw := nqraw.NewComm()
	if err := check(raw.Open(int(protocol), int(purpose), ro)); err != nil {
		nqraw.DeleteComm(raw)
		if events != nil {
			nqraw.DeleteEvents(events)
		}
		if secret != 0 {
			secret.Delete()
		}
		return nil, err
	}
	c := &Communicator{
		raw:       raw,
		id:        idFromBytes(raw.Id()),
		done:      nqraw.NewCompletions(),
		pending:   make(map[int64]*pendingPut),
		resolved:  make(chan struct{}),
		events:    events,
		secret:    secret,
		delivered: make(chan struct{}),
	}
	// The resolver goroutine keeps c reachable until Close has run, so this
	// only frees a closed communicator.  Methods end with KeepAlive(c) so
	// that c outlives their calls into libnq.
	runtime.SetFinalizer(c, func(c *Communicator) {
		nqraw.DeleteComm(c.raw)
		nqraw.DeleteCompletions(c.done)
		if c.events != nil {
			nqraw.DeleteEvents(c.events)
		}
		if c.secret != 0 {
			c.secret.Delete()
		}
	})
	go c.resolve()
	if events != nil {
		go c.deliver(opts.Events)
	} else {
		close(c.delivered)
	}
	return c, nil
}

// resolve completes futures as libnq reports their puts, until Close.
func (c *Communicator) resolve() {
	defer close(c.resolved)
	completion := nqraw.NewCompletion()
	defer nqraw.DeleteCompletion(completion)
	for {
		rc := c.done.Next(-1, completion)
		if rc == nqraw.NQ_ECLOSED {
			return
		}
		if rc != nqraw.NQ_OK {
			continue
		}
		token := completion.GetToken()
		c.pmu.Lock()
		p := c.pending[token]
		delete(c.pending, token)
		c.pmu.Unlock()
		p.pinner.Unpin()
		p.future.complete(check(completion.GetResult()))
	}
}

// ID returns this communicator's identity.
func (c *Communicator) ID() ID { return c.id }

// Put sends data to peers and returns its Future.  A client sends to its
// server and takes no peers; a server sends to the listed peers, or to
// every client when none are listed.  data is sent in place, without a
// copy: do not modify it until the Future completes.  Errors (ErrClosed,
// ErrNoPeer, ErrInvalid, ...) come back through the Future, and
// Future.Cancel withdraws the put while it waits in a queue.
func (c *Communicator) Put(data []byte, peers ...ID) *Future {
	defer runtime.KeepAlive(c)
	token := c.tokens.Add(1)
	f := newFuture(c, token)
	var list []byte
	if len(peers) > 0 {
		list = make([]byte, 0, len(peers)*len(ID{}))
		for _, p := range peers {
			list = append(list, p[:]...)
		}
	}
	p := &pendingPut{future: f}
	if len(data) > 0 {
		p.pinner.Pin(&data[0])
	}
	c.pmu.Lock()
	c.pending[token] = p
	c.pmu.Unlock()
	if err := check(c.raw.Put(data, list, c.done, token)); err != nil {
		c.pmu.Lock()
		delete(c.pending, token)
		c.pmu.Unlock()
		p.pinner.Unpin()
		f.complete(err)
	}
	return f
}

// cancel asks libnq to withdraw the put under token (see Future.Cancel).
func (c *Communicator) cancel(token int64) bool {
	defer runtime.KeepAlive(c)
	return c.raw.Cancel(c.done, token) > 0
}

// Get takes the next message, in arrival order, waiting until one arrives
// or ctx ends (then it returns ctx.Err()).  After Close, queued messages
// are still returned, then ErrClosed; a client whose connection failed gets
// why (ErrConnectionRefused, ErrConnectionReset, ErrTLS, ...).  A Get
// blocked in another goroutine returns when Close is called.  It waits on
// the communicator's readiness descriptor (libnq >= 1.2) through Go's
// network poller: no thread is held and nothing polls.
func (c *Communicator) Get(ctx context.Context) (Message, error) {
	return c.get(ctx, nil)
}

// GetFrom takes the next message from one of the given peers, leaving the
// other peers' messages queued in their order, as Get does otherwise.
func (c *Communicator) GetFrom(ctx context.Context, peers ...ID) (Message, error) {
	if len(peers) == 0 {
		return Message{}, ErrInvalid
	}
	return c.get(ctx, peers)
}

func (c *Communicator) get(ctx context.Context, peers []ID) (Message, error) {
	defer runtime.KeepAlive(c)
	msg := nqraw.NewMsg()
	defer nqraw.DeleteMsg(msg)
	var ids []byte
	for _, p := range peers {
		ids = append(ids, p[:]...)
	}
	take := func() (bool, error) {
		var rc int
		if peers == nil {
			rc = c.raw.Get(0, msg)
		} else {
			rc = c.raw.Get_from(ids, 0, msg)
		}
		switch rc {
		case nqraw.NQ_OK:
			return true, nil
		case nqraw.NQ_ETIMEDOUT:
			return false, nil
		default:
			return true, Error(rc)
		}
	}
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	got, err := take()
	if !got {
		got, err = c.wait(ctx, peers != nil, take)
	}
	if err != nil {
		return Message{}, err
	}
	if !got {
		return Message{}, ctx.Err()
	}
	return Message{Peer: idFromBytes(msg.Peer()), Data: msg.Data()}, nil
}

// wait calls take each time the readiness descriptor says a message (or
// the final error) waits, until take has one or ctx ends.  Each wait uses a
// descriptor of its own (a dup), so that ending one caller's wait with a
// read deadline touches no other.
func (c *Communicator) wait(ctx context.Context, picky bool, take func() (bool, error)) (bool, error) {
	fd := c.raw.Fd()
	if fd < 0 {
		return false, Error(fd)
	}
	dup, err := syscall.Dup(fd)
	if err != nil {
		return false, ErrSystem
	}
	f := os.NewFile(uintptr(dup), "nq-readiness")
	defer f.Close()
	conn, err := f.SyscallConn()
	if err != nil {
		return false, ErrSystem
	}
	if deadline, ok := ctx.Deadline(); ok {
		f.SetReadDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	var got bool
	var takeErr error
	for {
		others := false
		rerr := conn.Read(func(fd uintptr) bool {
			got, takeErr = take()
			// Still readable without one for us: other peers' messages
			// wait, and no new readiness would come for ours.
			others = !got && takeErr == nil && picky && readableNow(fd)
			return got || takeErr != nil || others
		})
		if got || takeErr != nil {
			return got, takeErr
		}
		if rerr != nil {
			// The read deadline is ctx's: it may pass just before ctx's own
			// timer fires.  The caller reports ctx.Err().
			if dl, ok := ctx.Deadline(); ctx.Err() == nil && ok && !time.Now().Before(dl) {
				<-ctx.Done()
			}
			if ctx.Err() == nil {
				return false, ErrSystem
			}
			return false, nil
		}
		if others {
			select {
			case <-ctx.Done():
				return false, nil
			case <-time.After(pickyRecheck):
			}
		}
	}
}

// readableNow reports whether fd is readable at this moment.
func readableNow(fd uintptr) bool {
	p := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd), events: 0x1} // POLLIN
	var zero syscall.Timespec
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1,
		uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return errno == 0 && n == 1 && p.revents&0x1 != 0
}

// Close closes the communicator and waits until it is done: queued puts are
// flushed, the close handshake runs (a server waits for its clients), and
// every Future has completed.  It returns nil when the connection ended
// cleanly, else how it ended (ErrConnectionReset, ErrTimeout, ...).  Later
// calls return the same result.
func (c *Communicator) Close() error {
	defer runtime.KeepAlive(c)
	c.closeOnce.Do(func() {
		c.closeErr = check(c.raw.Close())
		c.done.Shutdown()
		if c.events != nil {
			c.events.Shutdown()
		}
		<-c.resolved
		<-c.delivered
	})
	return c.closeErr
}

// LocalPort returns a server's listening port (useful with port 0), or a
// client's source port (0 before it connects).
func (c *Communicator) LocalPort() (int, error) {
	defer runtime.KeepAlive(c)
	port := c.raw.Local_port()
	return max(port, 0), check(port)
}

// ServerID returns a client's server identity once its handshake arrived.
func (c *Communicator) ServerID() (ID, bool) {
	defer runtime.KeepAlive(c)
	id := idFromBytes(c.raw.Server_id())
	return id, !id.IsZero()
}

// PeerIdentity returns what a connected peer presented to authenticate
// itself over TLS (libnq >= 1.3): the subject of its certificate in RFC 2253
// form, then one line per subject alternative name, as in
// "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1"; "" when it presented
// none (plain TCP, or a client not asked for one).  A client asks about its
// server (ServerID).  ErrNoPeer when peer is not connected now.
func (c *Communicator) PeerIdentity(peer ID) (string, error) {
	defer runtime.KeepAlive(c)
	text := nqraw.NewText()
	defer nqraw.DeleteText(text)
	if err := check(c.raw.Peer_identity(peer[:], text)); err != nil {
		return "", err
	}
	return string(text.Bytes()), nil
}

// Peers returns the connected peers: a server's clients, a client's server.
func (c *Communicator) Peers() ([]ID, error) {
	defer runtime.KeepAlive(c)
	ids := nqraw.NewIds()
	defer nqraw.DeleteIds(ids)
	if err := check(c.raw.Peers(ids)); err != nil {
		return nil, err
	}
	out := make([]ID, ids.Size())
	for i := range out {
		out[i] = idFromBytes(ids.At(int64(i)))
	}
	return out, nil
}
