// Command nq_conformance_peer_go is the Go conformance peer: it runs one
// role of a case from the case book on the nq binding and reports what it
// observes as JSON lines (conformance/README.md).
//
//	nq_conformance_peer_go --role server|client --protocol tcp|tls|mqtt|grpc --port P
//	    --case NAME [--host H] [--id UUID] [--key F] [--cert F] [--ca F]
//	    [--client-auth optional|required] [--token T] [--accept-token T --token-identity NAME]
//	    [--part LABEL] [--clients N] [--timeout S] [--cases-file F]
//	nq_conformance_peer_go --stdin [--cases-file F]
//
// With --stdin every line of standard input is one run: a JSON object with
// the options' names as keys plus "run", echoed in every line of that run.
// Runs go on in parallel; the program ends once standard input has ended and
// every run is done.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/libnq/libnq/bindings/go/nq"
)

// Spec is one run: the command line's options, or one line of standard input.
type Spec struct {
	Run        string `json:"run"`
	Role       string `json:"role"`
	Protocol   string `json:"protocol"`
	Host       string `json:"host"`
	Port       int    `json:"port"`
	Case       string `json:"case"`
	ID         string `json:"id"`
	Key        string `json:"key"`         // a server's key; a client's own with Cert
	Cert       string `json:"cert"`        // a server's chain; a client's own with Key, else its trust
	CA         string `json:"ca"`          // trust anchors: a server checks clients, a client its server
	ClientAuth string `json:"client_auth"` // a server: "optional" or "required"
	Token      string `json:"token"`       // a gRPC client's bearer token
	// A gRPC server accepts AcceptToken, under the name TokenIdentity.
	AcceptToken   string `json:"accept_token"`
	TokenIdentity string `json:"token_identity"`
	Part          string `json:"part"`
	Clients       int    `json:"clients"`
	Timeout       int    `json:"timeout"`
}

type object = map[string]any

// As in casebook.py: items listed per sender, bytes shown per item.
const (
	itemsMax   = 16
	itemPrefix = 8
)

var errorNames = map[int]string{
	0: "ok", -1: "invalid", -2: "no_memory", -3: "timeout", -4: "closed", -5: "connection_reset",
	-6: "no_peer", -7: "tls", -8: "protocol", -9: "refused", -10: "address", -11: "address_in_use",
	-12: "not_supported", -13: "system", -14: "full", -15: "serialize", -16: "pending",
	-17: "replaced", -18: "canceled", -19: "auth",
}

var ops = []string{"put", "expect", "echo", "close", "drain", "sleep", "reopen", "identity"}

// output writes whole lines, one writer at a time.
type output struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *output) write(line object) {
	data, err := json.Marshal(line)
	if err != nil {
		data = []byte(`{"event":"error","detail":"cannot encode a report"}`)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(data)
	o.w.WriteByte('\n')
	o.w.Flush()
}

func errorName(err error) string {
	if err == nil {
		return "ok"
	}
	var e nq.Error
	if errors.As(err, &e) {
		if name, ok := errorNames[e.Code()]; ok {
			return name
		}
		return fmt.Sprintf("error%d", e.Code())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other:" + err.Error()
}

// result is the "result" (and "detail") of an observation.
func result(line object, err error) object {
	line["result"] = errorName(err)
	if err != nil {
		line["detail"] = err.Error()
	}
	return line
}

type group struct {
	peer  nq.ID
	count int
	hash  hash.Hash
	items [][2]any
}

// tally groups received messages by sender, in order of first message.
type tally struct {
	groups []*group
	total  int
}

func (t *tally) add(peer nq.ID, data []byte) {
	var g *group
	for _, candidate := range t.groups {
		if candidate.peer == peer {
			g = candidate
		}
	}
	if g == nil {
		g = &group{peer: peer, hash: sha256.New()}
		t.groups = append(t.groups, g)
	}
	var header [8]byte
	binary.BigEndian.PutUint64(header[:], uint64(len(data)))
	g.hash.Write(header[:])
	g.hash.Write(data)
	if len(g.items) < itemsMax {
		g.items = append(g.items, [2]any{len(data), hex.EncodeToString(data[:min(len(data), itemPrefix)])})
	}
	g.count++
	t.total++
}

func (t *tally) write(line object) object {
	from := []object{}
	for _, g := range t.groups {
		items := g.items
		if items == nil {
			items = [][2]any{}
		}
		from = append(from, object{"peer": g.peer.String(), "count": g.count,
			"digest": hex.EncodeToString(g.hash.Sum(nil)), "items": items})
	}
	line["count"] = t.total
	line["from"] = from
	return line
}

type received struct {
	peer nq.ID
	data []byte
}

// run is one role of one case, run step by step.
type run struct {
	spec     Spec
	out      *output
	comm     *nq.Communicator
	id       nq.ID
	closed   bool
	timeout  time.Duration
	deadline time.Time
	senders  []nq.ID
	last     []received
}

func (r *run) emit(line object) {
	line["run"] = r.spec.Run
	r.out.write(line)
}

func (r *run) ctx() (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), r.deadline)
}

func (r *run) open(step any, listening bool) error {
	protocols := map[string]nq.Protocol{"tcp": nq.TCP, "tls": nq.TCP, "mqtt": nq.MQTT, "grpc": nq.GRPC}
	opts := &nq.Options{ID: r.id, Addr: fmt.Sprintf("%s:%d", r.spec.Host, r.spec.Port), CloseTimeout: r.timeout}
	purpose := nq.Client
	if r.spec.Role == "server" {
		purpose = nq.Server
	}
	if r.spec.Cert != "" || r.spec.CA != "" {
		// A client's KeyFile makes KeyFile and CertFile its own, and CAFile
		// what it checks its server against.
		opts.TLS = &nq.TLS{CertFile: r.spec.Cert, KeyFile: r.spec.Key, CAFile: r.spec.CA}
		if purpose == nq.Client && r.spec.CA == "" {
			opts.TLS.KeyFile = ""
		}
		opts.TLS.Token = r.spec.Token
		if r.spec.AcceptToken != "" {
			opts.TLS.AcceptTokens = map[string]string{r.spec.AcceptToken: r.spec.TokenIdentity}
		}
		switch r.spec.ClientAuth {
		case "optional":
			opts.TLS.ClientAuth = nq.ClientCertOptional
		case "required":
			opts.TLS.ClientAuth = nq.ClientCertRequired
		}
	}
	comm, err := nq.Open(protocols[r.spec.Protocol], purpose, opts)
	r.emit(result(object{"step": step, "op": "open"}, err))
	if err != nil {
		return err
	}
	r.comm = comm
	r.closed = false
	if listening {
		port := r.spec.Port
		if r.spec.Protocol != "mqtt" {
			port, _ = comm.LocalPort()
		}
		r.emit(object{"event": "listening", "port": port})
	}
	return nil
}

func pattern(size int) []byte {
	out := make([]byte, size)
	for i := range out {
		out[i] = byte(i % 251)
	}
	return out
}

// payload is the bytes of a payload spec built by this run for receiver to.
func (r *run) payload(spec object, to *nq.ID) ([]byte, error) {
	if text, ok := spec["text"].(string); ok {
		receiver := ""
		if to != nil {
			receiver = to.String()
		}
		text = strings.ReplaceAll(text, "{self}", r.id.String())
		return []byte(strings.ReplaceAll(text, "{to}", receiver)), nil
	}
	if h, ok := spec["hex"].(string); ok {
		return hex.DecodeString(h)
	}
	if size, ok := spec["size"].(float64); ok {
		return pattern(int(size)), nil
	}
	if own, _ := spec["own_id"].(bool); own {
		id := r.id
		return id[:], nil
	}
	return nil, fmt.Errorf("unknown payload spec %v", spec)
}

func number(v any, fallback int) int {
	if f, ok := v.(float64); ok {
		return int(f)
	}
	return fallback
}

func (r *run) put(step object) object {
	to, _ := step["to"].(string)
	wait, _ := step["wait"].(string)
	if wait == "" {
		wait = "each"
	}
	repeat, indexed := step["repeat"]
	rounds := number(repeat, 1)
	type target struct {
		peers    []nq.ID
		receiver *nq.ID
	}
	targets := []target{{}}
	switch to {
	case "each":
		targets = nil
		for i := range r.senders {
			targets = append(targets, target{[]nq.ID{r.senders[i]}, &r.senders[i]})
		}
	case "senders":
		targets = []target{{peers: r.senders}}
	case "unknown":
		targets = []target{{peers: []nq.ID{nq.NewID()}}}
	}
	var first error
	note := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	// The payload, then those under "then", one after the other.
	specs := []any{step["put"]}
	if then, ok := step["then"].([]any); ok {
		specs = append(specs, then...)
	}
	rows := make([][][]byte, len(specs))
	for j, s := range specs {
		spec, _ := s.(object)
		rows[j] = make([][]byte, len(targets))
		for i, t := range targets {
			base, err := r.payload(spec, t.receiver)
			if err != nil {
				return result(object{"count": 0}, err)
			}
			rows[j][i] = base
		}
	}
	ctx, cancel := r.ctx()
	defer cancel()
	var pending []*nq.Future
	count := 0
	for _, bases := range rows {
		for k := 0; k < rounds; k++ {
			for i, t := range targets {
				msg := bases[i]
				if indexed {
					msg = make([]byte, 8+len(bases[i]))
					binary.BigEndian.PutUint64(msg, uint64(k))
					copy(msg[8:], bases[i])
				}
				count++
				future := r.comm.Put(msg, t.peers...)
				switch wait {
				case "each":
					note(future.Wait(ctx))
				case "end":
					pending = append(pending, future)
				default:
					// Not waited for, but a failure already known is one.
					if err := future.Err(); !errors.Is(err, nq.ErrPending) {
						note(err)
					}
				}
			}
		}
	}
	for _, future := range pending {
		note(future.Wait(ctx))
	}
	return result(object{"count": count}, first)
}

func (r *run) take(t *tally) error {
	ctx, cancel := r.ctx()
	defer cancel()
	msg, err := r.comm.Get(ctx)
	if err != nil {
		return err
	}
	t.add(msg.Peer, msg.Data)
	r.last = append(r.last, received{msg.Peer, msg.Data})
	for _, s := range r.senders {
		if s == msg.Peer {
			return nil
		}
	}
	r.senders = append(r.senders, msg.Peer)
	return nil
}

func (r *run) expect(step object) object {
	wanted := 0
	switch e := step["expect"].(type) {
	case float64:
		wanted = int(e)
	case object:
		wanted = number(e["per_client"], 1) * r.spec.Clients
	}
	t := &tally{}
	r.last = nil
	var err error
	for i := 0; i < wanted && err == nil; i++ {
		err = r.take(t)
	}
	return t.write(result(object{}, err))
}

func (r *run) echo() object {
	ctx, cancel := r.ctx()
	defer cancel()
	var first error
	for _, m := range r.last {
		if err := r.comm.Put(m.data, m.peer).Wait(ctx); err != nil && first == nil {
			first = err
		}
	}
	return result(object{"count": len(r.last)}, first)
}

func (r *run) close() object {
	start := time.Now()
	err := r.comm.Close()
	r.closed = true
	return result(object{"ms": time.Since(start).Milliseconds()}, err)
}

func (r *run) drain() object {
	t := &tally{}
	r.last = nil
	var err error
	for err == nil {
		err = r.take(t)
	}
	return t.write(object{"result": "ok", "end": errorName(err), "detail": err.Error()})
}

// identity reports what authenticated each known sender, in order; the
// first failure is the result.
func (r *run) identity() object {
	var first error
	peers := []object{}
	for _, peer := range r.senders {
		text, err := r.comm.PeerIdentity(peer)
		if err != nil && first == nil {
			first = err
		}
		peers = append(peers, object{"peer": peer.String(), "identity": text})
	}
	return result(object{"peers": peers}, first)
}

func (r *run) reopen() object {
	closing := "ok"
	if !r.closed {
		closing = errorName(r.comm.Close())
	}
	r.comm = nil
	r.closed = true
	outcome := "ok"
	if r.open(nil, false) != nil {
		outcome = "failed"
	}
	return object{"result": outcome, "close": closing}
}

func findSteps(book object, name, role, part string) ([]any, error) {
	cases, _ := book["cases"].([]any)
	for _, c := range cases {
		kase, _ := c.(object)
		if kase["name"] != name {
			continue
		}
		if role == "server" {
			steps, _ := kase["server"].([]any)
			return steps, nil
		}
		groups, _ := kase["clients"].([]any)
		for _, g := range groups {
			grp, _ := g.(object)
			label, ok := grp["label"].(string)
			if !ok {
				label = "client"
			}
			if part == "" || label == part {
				steps, _ := grp["steps"].([]any)
				return steps, nil
			}
		}
		return nil, fmt.Errorf("case %q has no client group %q", name, part)
	}
	return nil, fmt.Errorf("no case named %q", name)
}

func opOf(step object) string {
	for _, op := range ops {
		if _, ok := step[op]; ok {
			return op
		}
	}
	return ""
}

func (r *run) execute(book object) {
	defer r.emit(object{"event": "done"})
	// A closed communicator is freed when it is collected; collecting at
	// the end of each run frees it before the next run, as a fresh process
	// would start (paho.mqtt.c connects slowly while another client exists).
	defer runtime.GC()
	defer func() { r.comm = nil }()
	steps, err := findSteps(book, r.spec.Case, r.spec.Role, r.spec.Part)
	if err == nil && r.spec.Role != "server" && r.spec.Role != "client" {
		err = fmt.Errorf("role must be server or client, not %q", r.spec.Role)
	}
	if err == nil && r.spec.ID != "" {
		r.id, err = nq.ParseID(r.spec.ID)
	} else if err == nil {
		r.id = nq.NewID()
	}
	if err != nil {
		r.emit(object{"event": "error", "detail": err.Error()})
		return
	}
	if r.open(-1, r.spec.Role == "server") != nil {
		return
	}
	for index, s := range steps {
		step, _ := s.(object)
		op := opOf(step)
		if r.comm == nil {
			r.emit(object{"event": "error", "detail": "no communicator (a reopen failed)"})
			return
		}
		var line object
		switch op {
		case "put":
			line = r.put(step)
		case "expect":
			line = r.expect(step)
		case "echo":
			line = r.echo()
		case "close":
			line = r.close()
		case "drain":
			line = r.drain()
		case "sleep":
			time.Sleep(time.Duration(number(step["sleep"], 0)) * time.Millisecond)
			line = object{"result": "ok"}
		case "reopen":
			line = r.reopen()
		case "identity":
			line = r.identity()
		default:
			r.emit(object{"event": "error", "detail": "a step holds no known operation"})
			return
		}
		line["step"] = index
		line["op"] = op
		r.emit(line)
	}
	if !r.closed {
		line := r.close()
		line["step"], line["op"], line["implicit"] = len(steps), "close", true
		r.emit(line)
	}
}

func newRun(spec Spec, book object, out *output) *run {
	if spec.Host == "" {
		spec.Host = "127.0.0.1"
	}
	if spec.Protocol == "" {
		spec.Protocol = "tcp"
	}
	if spec.Clients == 0 {
		spec.Clients = 1
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = number(book["timeout"], 60)
	}
	r := &run{spec: spec, out: out, timeout: time.Duration(timeout) * time.Second}
	r.deadline = time.Now().Add(r.timeout)
	return r
}

func main() {
	var spec Spec
	fromStdin := flag.Bool("stdin", false, "read runs as JSON lines from standard input")
	casesFile := flag.String("cases-file", "cases.json", "the case book")
	flag.StringVar(&spec.Role, "role", "", "server or client")
	flag.StringVar(&spec.Protocol, "protocol", "tcp", "tcp, tls, mqtt or grpc")
	flag.StringVar(&spec.Host, "host", "127.0.0.1", "address to bind or connect (mqtt: the broker)")
	flag.IntVar(&spec.Port, "port", 0, "port (0: a server picks one)")
	flag.StringVar(&spec.Case, "case", "", "the case to run")
	flag.StringVar(&spec.ID, "id", "", "own id (default random)")
	flag.StringVar(&spec.Key, "key", "", "TLS key (server)")
	flag.StringVar(&spec.Cert, "cert", "", "TLS certificate (server) or trusted certificates (client)")
	flag.StringVar(&spec.CA, "ca", "", "trust anchors (with it a client's --key and --cert are its own)")
	flag.StringVar(&spec.ClientAuth, "client-auth", "", "server: optional or required client certificates")
	flag.StringVar(&spec.Token, "token", "", "gRPC client: the bearer token it sends")
	flag.StringVar(&spec.AcceptToken, "accept-token", "", "gRPC server: the bearer token it accepts")
	flag.StringVar(&spec.TokenIdentity, "token-identity", "", "gRPC server: the name of --accept-token's clients")
	flag.StringVar(&spec.Part, "part", "", "the client group's label")
	flag.IntVar(&spec.Clients, "clients", 1, "clients in the run")
	flag.IntVar(&spec.Timeout, "timeout", 0, "seconds the run may take (default: the case book's)")
	flag.Parse()

	text, err := os.ReadFile(*casesFile)
	var book object
	if err == nil {
		err = json.Unmarshal(text, &book)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nq_conformance_peer_go:", err)
		os.Exit(2)
	}
	out := &output{w: bufio.NewWriter(os.Stdout)}
	if !*fromStdin {
		if spec.Role == "" || spec.Case == "" {
			fmt.Fprintln(os.Stderr, "nq_conformance_peer_go: --role and --case are required without --stdin")
			os.Exit(2)
		}
		r := newRun(spec, book, out)
		// A run that outlives its budget by far is stuck: end the process.
		time.AfterFunc(r.timeout+30*time.Second, func() { os.Exit(124) })
		r.execute(book)
		return
	}
	var runs sync.WaitGroup
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 64*1024), 1<<20)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" {
			continue
		}
		var s Spec
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			fmt.Fprintln(os.Stderr, "nq_conformance_peer_go: a run that is not JSON:", err)
			continue
		}
		runs.Add(1)
		go func(r *run) {
			defer runs.Done()
			r.execute(book)
		}(newRun(s, book, out))
	}
	runs.Wait()
}
