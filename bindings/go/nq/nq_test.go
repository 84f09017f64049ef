package nq_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libnq/libnq/bindings/go/nq"
	"github.com/libnq/libnq/bindings/go/nq/internal/nqraw"
)

const timeout = 10 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// open opens a communicator and closes it when the test ends (clients
// before servers, since cleanups run last-in first-out).
func open(t *testing.T, purpose nq.Purpose, opts *nq.Options) *nq.Communicator {
	t.Helper()
	return openOver(t, nq.TCP, purpose, opts)
}

// openOver is open over protocol.
func openOver(t *testing.T, protocol nq.Protocol, purpose nq.Purpose, opts *nq.Options) *nq.Communicator {
	t.Helper()
	c, err := nq.Open(protocol, purpose, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func server(t *testing.T) (*nq.Communicator, int) {
	t.Helper()
	s := open(t, nq.Server, &nq.Options{Addr: addr(0)})
	port, err := s.LocalPort()
	if err != nil || port == 0 {
		t.Fatalf("LocalPort: %d, %v", port, err)
	}
	return s, port
}

func client(t *testing.T, port int) *nq.Communicator {
	t.Helper()
	return open(t, nq.Client, &nq.Options{Addr: addr(port)})
}

func waitPeers(t *testing.T, s *nq.Communicator, n int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		peers, err := s.Peers()
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients connected", len(peers), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, c *nq.Communicator) nq.Message {
	t.Helper()
	m, err := c.Get(ctx(t))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return m
}

func TestConstantsMatchLibnq(t *testing.T) {
	if int(nq.TCP) != int(nqraw.NQ_TCP) || int(nq.MQTT) != int(nqraw.NQ_MQTT) ||
		int(nq.GRPC) != int(nqraw.NQ_GRPC) || int(nq.Client) != int(nqraw.NQ_CLIENT) ||
		int(nq.Server) != int(nqraw.NQ_SERVER) {
		t.Fatal("protocol or purpose constants differ from nq/nq.h")
	}
}

func TestClientPutReachesServerWithClientID(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	if err := c.Put([]byte("hello")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	m := get(t, s)
	if string(m.Data) != "hello" || m.Peer != c.ID() {
		t.Fatalf("got %q from %v, want hello from %v", m.Data, m.Peer, c.ID())
	}
}

func TestServerReplyReachesClient(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	c.Put([]byte("ping"))
	req := get(t, s)
	if err := s.Put([]byte("pong"), req.Peer).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	m := get(t, c)
	if string(m.Data) != "pong" || m.Peer != s.ID() {
		t.Fatalf("got %q from %v", m.Data, m.Peer)
	}
	if id, ok := c.ServerID(); !ok || id != s.ID() {
		t.Fatalf("ServerID %v %v, want %v", id, ok, s.ID())
	}
}

func TestBroadcastReachesEveryClient(t *testing.T) {
	s, port := server(t)
	clients := []*nq.Communicator{client(t, port), client(t, port), client(t, port)}
	waitPeers(t, s, 3)
	if err := s.Put([]byte("all")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if m := get(t, c); string(m.Data) != "all" {
			t.Fatalf("got %q", m.Data)
		}
	}
}

func TestTargetedPutReachesOnlyThatClient(t *testing.T) {
	s, port := server(t)
	first, second := client(t, port), client(t, port)
	waitPeers(t, s, 2)
	if err := s.Put([]byte("only you"), second.ID()).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if m := get(t, second); string(m.Data) != "only you" {
		t.Fatalf("got %q", m.Data)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if m, err := first.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first client got %q, %v", m.Data, err)
	}
}

func TestMessagesKeepTheirOrderAndBytes(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	var futures []*nq.Future
	for i := 0; i < 500; i++ {
		futures = append(futures, c.Put([]byte(fmt.Sprint(i))))
	}
	for _, f := range futures {
		if err := f.Wait(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 500; i++ {
		if m := get(t, s); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m.Data)
		}
	}
	big := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 3<<20)
	if err := c.Put(big).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if m := get(t, s); !bytes.Equal(m.Data, big) {
		t.Fatal("large message differs")
	}
	if err := c.Put(nil).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if m := get(t, s); len(m.Data) != 0 {
		t.Fatalf("empty message arrived as %d bytes", len(m.Data))
	}
}

func TestFutureFailsForAPeerThatIsNotConnected(t *testing.T) {
	s, _ := server(t)
	err := s.Put([]byte("nobody"), nq.NewID()).Wait(ctx(t))
	if !errors.Is(err, nq.ErrNoPeer) {
		t.Fatalf("got %v, want ErrNoPeer", err)
	}
}

func TestFutureFailsWhenTheServerCannotBeReached(t *testing.T) {
	s, port := server(t)
	s.Close()
	c, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: addr(port)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put([]byte("hello")).Wait(ctx(t)); !errors.Is(err, nq.ErrConnectionRefused) {
		t.Fatalf("future: %v", err)
	}
	if _, err := c.Get(ctx(t)); !errors.Is(err, nq.ErrConnectionRefused) {
		t.Fatalf("get: %v", err)
	}
	if err := c.Close(); !errors.Is(err, nq.ErrConnectionRefused) {
		t.Fatalf("close: %v", err)
	}
}

func TestPutAfterCloseFails(t *testing.T) {
	_, port := server(t)
	c := client(t, port)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Put([]byte("late")).Wait(ctx(t)); !errors.Is(err, nq.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestClientPutWithPeersIsInvalid(t *testing.T) {
	_, port := server(t)
	c := client(t, port)
	if err := c.Put([]byte("x"), nq.NewID()).Wait(ctx(t)); !errors.Is(err, nq.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func TestGetAfterCloseReturnsQueuedMessagesThenErrClosed(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	if err := c.Put([]byte("before close")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// The client's close sends its FIN after the data, and the server's
	// close waits for that FIN: the message is queued by then.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if m := get(t, s); string(m.Data) != "before close" {
		t.Fatalf("got %q", m.Data)
	}
	if _, err := s.Get(ctx(t)); !errors.Is(err, nq.ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if err := s.Put([]byte("x")).Wait(ctx(t)); !errors.Is(err, nq.ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
}

func TestGetBlockedInAnotherGoroutineEndsWithClose(t *testing.T) {
	_, port := server(t)
	c := client(t, port)
	result := make(chan error)
	go func() {
		_, err := c.Get(context.Background())
		result <- err
	}()
	time.Sleep(100 * time.Millisecond)
	go c.Close()
	select {
	case err := <-result:
		if !errors.Is(err, nq.ErrClosed) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Get did not return")
	}
}

func TestGetHonoursCancellation(t *testing.T) {
	s, _ := server(t)
	c, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	if _, err := s.Get(c); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
}

func TestManyGoroutinesPutAtOnce(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := c.Put([]byte{byte(g), byte(i)}).Wait(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	seen := map[[2]byte]bool{}
	for i := 0; i < 400; i++ {
		m := get(t, s)
		seen[[2]byte{m.Data[0], m.Data[1]}] = true
	}
	if len(seen) != 400 {
		t.Fatalf("%d distinct messages", len(seen))
	}
}

func TestOptionsAreApplied(t *testing.T) {
	s, port := server(t)
	id := nq.NewID()
	c := open(t, nq.Client, &nq.Options{ID: id, Addr: addr(port), CloseTimeout: 5 * time.Second})
	if c.ID() != id {
		t.Fatalf("ID %v, want %v", c.ID(), id)
	}
	c.Put([]byte("x"))
	if m := get(t, s); m.Peer != id {
		t.Fatalf("peer %v", m.Peer)
	}
	if _, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: addr(0), Workers: 1000}); !errors.Is(err, nq.ErrInvalid) {
		t.Fatalf("workers 1000: %v", err)
	}
	if _, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: "no port"}); !errors.Is(err, nq.ErrInvalid) {
		t.Fatalf("bad addr: %v", err)
	}
	if _, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: addr(port)}); !errors.Is(err, nq.ErrAddressInUse) {
		t.Fatalf("port in use: %v", err)
	}
}

func TestGRPCRoundTrip(t *testing.T) {
	s, err := nq.Open(nq.GRPC, nq.Server, &nq.Options{Addr: addr(0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	port, _ := s.LocalPort()
	c, err := nq.Open(nq.GRPC, nq.Client, &nq.Options{Addr: addr(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Put([]byte("over grpc")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	req := get(t, s)
	if string(req.Data) != "over grpc" || req.Peer != c.ID() {
		t.Fatalf("got %q from %v", req.Data, req.Peer)
	}
	if err := s.Put([]byte("reply"), req.Peer).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if m := get(t, c); string(m.Data) != "reply" {
		t.Fatalf("got %q", m.Data)
	}
}

func TestIDText(t *testing.T) {
	id, err := nq.ParseID("8F02C060B59C45209795369445186A49")
	if err != nil || id.String() != "8f02c060-b59c-4520-9795-369445186a49" {
		t.Fatalf("%v %v", id, err)
	}
	if _, err := nq.ParseID("not-a-uuid"); err == nil {
		t.Fatal("parsed garbage")
	}
	if a, b := nq.NewID(), nq.NewID(); a == b || a.IsZero() || a[6]>>4 != 4 {
		t.Fatal("NewID")
	}
}

func certificate(t *testing.T) (key, cert string) {
	dir := t.TempDir()
	key, cert = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec",
		"-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
		"-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return key, cert
}

func TestTLSRoundTrip(t *testing.T) {
	key, cert := certificate(t)
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), TLS: &nq.TLS{KeyFile: key, CertFile: cert}})
	port, _ := s.LocalPort()
	c := open(t, nq.Client, &nq.Options{Addr: addr(port), TLS: &nq.TLS{CertFile: cert}})
	if err := c.Put([]byte("secret")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	req := get(t, s)
	s.Put([]byte("answer"), req.Peer)
	if m := get(t, c); string(m.Data) != "answer" {
		t.Fatalf("got %q", m.Data)
	}
}

func TestTLSClientRefusesAnUntrustedServer(t *testing.T) {
	key, cert := certificate(t)
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), TLS: &nq.TLS{KeyFile: key, CertFile: cert}})
	port, _ := s.LocalPort()
	c, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: addr(port), TLS: &nq.TLS{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put([]byte("secret")).Wait(ctx(t)); !errors.Is(err, nq.ErrTLS) {
		t.Fatalf("got %v, want ErrTLS", err)
	}
	if err := c.Close(); !errors.Is(err, nq.ErrTLS) {
		t.Fatalf("close: %v", err)
	}
}

func TestEventsTellOfPeersComingAndGoing(t *testing.T) {
	events := make(chan nq.Event, 16)
	s := open(t, nq.Server, &nq.Options{Addr: "127.0.0.1:0", Events: events})
	port, err := s.LocalPort()
	if err != nil {
		t.Fatal(err)
	}
	id := nq.NewID()
	next := func() nq.Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(timeout):
			t.Fatal("no event")
		}
		return nq.Event{}
	}
	first, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: addr(port), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Type != nq.Connected || ev.Peer != id || ev.Reason != nil {
		t.Fatalf("first event: %+v", ev)
	}
	// The same id again: the newest connection wins.
	second, err := nq.Open(nq.TCP, nq.Client, &nq.Options{Addr: addr(port), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Type != nq.Disconnected || ev.Peer != id || !errors.Is(ev.Reason, nq.ErrReplaced) {
		t.Fatalf("second event: %+v", ev)
	}
	if ev := next(); ev.Type != nq.Connected || ev.Peer != id {
		t.Fatalf("third event: %+v", ev)
	}
	if _, err := first.Get(ctx(t)); !errors.Is(err, nq.ErrConnectionReset) {
		t.Fatalf("the replaced client's Get: %v", err)
	}
	first.Close()
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Type != nq.Disconnected || ev.Reason != nil {
		t.Fatalf("fourth event: %+v", ev)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-events; open {
		t.Fatal("Close left the events channel open")
	}
}

func TestReconnectingClientFollowsARestartedServer(t *testing.T) {
	first, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: addr(0), CloseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	port, _ := first.LocalPort()
	events := make(chan nq.Event, 64)
	c := open(t, nq.Client, &nq.Options{Addr: addr(port), Reconnect: 50 * time.Millisecond,
		ReconnectMax: 400 * time.Millisecond, Events: events})
	if err := c.Put([]byte("before")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Get(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); !errors.Is(err, nq.ErrTimeout) {
		t.Fatalf("the first server's close: %v", err)
	}
	want := []nq.EventType{nq.Connected, nq.Disconnected, nq.Reconnecting}
	for i, typ := range want {
		select {
		case ev := <-events:
			if ev.Type != typ || ev.Peer != first.ID() {
				t.Fatalf("event %d: %+v", i, ev)
			}
		case <-time.After(timeout):
			t.Fatalf("no event %d", i)
		}
	}
	pending := c.Put([]byte("while away"))
	// A close timeout, so that a failing test's cleanup (servers close
	// before this client) cannot wait for the client forever.
	second := open(t, nq.Server, &nq.Options{Addr: addr(port), CloseTimeout: time.Second})
	msg, err := second.Get(ctx(t))
	if err != nil || msg.Peer != c.ID() || string(msg.Data) != "while away" {
		t.Fatalf("the second server got %+v, %v", msg, err)
	}
	if err := pending.Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	second.Put([]byte("welcome back"), c.ID())
	if reply, err := c.Get(ctx(t)); err != nil || string(reply.Data) != "welcome back" {
		t.Fatalf("the client got %+v, %v", reply, err)
	}
	if id, ok := c.ServerID(); !ok || id != second.ID() {
		t.Fatalf("ServerID %v, %v", id, ok)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A server holding one undelivered message stops reading: the next message
// is written but not received, and with acknowledged delivery its future
// waits until the server makes room.
func TestAcknowledgedDeliveryCompletesAFutureWhenThePeerHasIt(t *testing.T) {
	for _, acked := range []bool{false, true} {
		s := open(t, nq.Server, &nq.Options{Addr: addr(0), QueueSize: 1, Acknowledged: acked,
			CloseTimeout: time.Second})
		port, _ := s.LocalPort()
		c := open(t, nq.Client, &nq.Options{Addr: addr(port), Acknowledged: acked})
		if err := c.Put([]byte("first")).Wait(ctx(t)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the server pauses after "first"
		second := c.Put([]byte("second"))
		short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := second.Wait(short)
		cancel()
		if acked && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("acknowledged: the second future ended before the server read it: %v", err)
		}
		if !acked && err != nil {
			t.Fatalf("written: %v", err)
		}
		for _, want := range []string{"first", "second"} {
			if msg, err := s.Get(ctx(t)); err != nil || string(msg.Data) != want {
				t.Fatalf("the server got %+v, %v", msg, err)
			}
		}
		if err := second.Wait(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Get wakes at once on a message and on the end of its context, with no
// polling; GetFrom leaves other peers' messages queued in order.
func TestGetWakesOnArrivalAndOnCancel(t *testing.T) {
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), CloseTimeout: time.Second})
	port, _ := s.LocalPort()
	a := open(t, nq.Client, &nq.Options{Addr: addr(port)})
	b := open(t, nq.Client, &nq.Options{Addr: addr(port)})

	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Get(cctx)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancelled Get returned %v", err)
		}
		if waited := time.Since(start); waited > 50*time.Millisecond {
			t.Fatalf("a cancelled Get took %v to return", waited)
		}
	case <-time.After(timeout):
		t.Fatal("a cancelled Get did not return")
	}

	got := make(chan nq.Message, 1)
	go func() {
		msg, err := s.GetFrom(ctx(t), b.ID())
		if err == nil {
			got <- msg
		}
	}()
	if err := a.Put([]byte("from a")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-got:
		t.Fatalf("GetFrom(b) took %q from %v", msg.Data, msg.Peer)
	case <-time.After(100 * time.Millisecond):
	}
	if err := b.Put([]byte("from b")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-got:
		if msg.Peer != b.ID() || string(msg.Data) != "from b" {
			t.Fatalf("GetFrom(b) got %+v", msg)
		}
	case <-time.After(timeout):
		t.Fatal("GetFrom(b) did not wake for b's message")
	}
	if msg, err := s.Get(ctx(t)); err != nil || msg.Peer != a.ID() || string(msg.Data) != "from a" {
		t.Fatalf("Get after GetFrom got %+v, %v", msg, err)
	}
	short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	if _, err := s.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with a deadline returned %v", err)
	}
}

// A server holding one undelivered message stops reading (QueueSize 1), so
// a large message to it stays partly written and what is put after it
// waits in the client's queue, where Cancel takes it back.
func TestCancelWithdrawsAPutQueuedBehindALargeOne(t *testing.T) {
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), QueueSize: 1, CloseTimeout: timeout})
	port, _ := s.LocalPort()
	c := open(t, nq.Client, &nq.Options{Addr: addr(port), CloseTimeout: timeout})
	if err := c.Put([]byte("first")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 32<<20)
	bigFuture := c.Put(big)
	small := c.Put([]byte("small"))
	if !small.Cancel() {
		t.Fatal("Cancel of a put queued behind a large one returned false")
	}
	if err := small.Wait(ctx(t)); !errors.Is(err, nq.ErrCanceled) {
		t.Fatalf("a withdrawn put completed with %v, want ErrCanceled", err)
	}
	if small.Cancel() {
		t.Fatal("a second Cancel returned true")
	}
	if m := get(t, s); string(m.Data) != "first" {
		t.Fatalf("got %q, want first", m.Data)
	}
	if m := get(t, s); len(m.Data) != len(big) {
		t.Fatalf("got %d bytes, want the large message", len(m.Data))
	}
	if err := bigFuture.Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Put([]byte("after")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if m := get(t, s); string(m.Data) != "after" {
		t.Fatalf("got %q after the large message, want after (the withdrawn put came?)", m.Data)
	}
}

func TestCancellingACompletedPutChangesNothing(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	f := c.Put([]byte("done"))
	if err := f.Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if f.Cancel() {
		t.Fatal("Cancel of a completed put returned true")
	}
	if err := f.Err(); err != nil {
		t.Fatalf("the completed put's result became %v", err)
	}
	if m := get(t, s); string(m.Data) != "done" {
		t.Fatalf("got %q, want done", m.Data)
	}
}

// With DropOldest a peer that floods a full queue is never paused: its
// oldest waiting messages make room, the newest arrive in order.
func TestDropOldestKeepsTheNewest(t *testing.T) {
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), QueueSize: 3, DropOldest: true})
	port, err := s.LocalPort()
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, port)
	const n = 30
	for i := 0; i < n; i++ {
		if err := c.Put([]byte{byte(i)}).Wait(ctx(t)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	time.Sleep(time.Second) // the last ones reach the server's queue
	var got []byte
	for len(got) == 0 || got[len(got)-1] != n-1 {
		m, err := s.Get(ctx(t))
		if err != nil {
			t.Fatalf("get after %v: %v", got, err)
		}
		got = append(got, m.Data[0])
	}
	if len(got) >= n {
		t.Fatalf("nothing was dropped: got %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("not the newest in order: %v", got)
		}
	}
}

// The identities the authority's certificates carry (see authority).
const (
	clientAIdentity = "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1"
	serverIdentity  = "CN=server\nDNS:localhost\nIP:127.0.0.1"
)

// authority makes, in a temporary directory, an authority (ca.key, ca.pem),
// the server's and client-a's keys and certificates it signed (NAME.key,
// NAME.pem), and anchors/, the authority in a directory hashed by openssl
// rehash; it returns the directory.
func authority(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	openssl := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", args[0], err, out)
		}
	}
	newKey := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	openssl(append([]string{"req", "-x509"}, append(newKey, "-keyout", path("ca.key"),
		"-out", path("ca.pem"), "-days", "2", "-subj", "/CN=ca",
		"-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign")...)...)
	for name, names := range map[string]string{
		"server":   "DNS:localhost,IP:127.0.0.1",
		"client-a": "DNS:client-a.example,IP:127.0.0.1",
	} {
		openssl(append([]string{"req", "-new"}, append(newKey, "-keyout", path(name+".key"),
			"-out", path(name+".csr"), "-subj", "/CN="+name,
			"-addext", "subjectAltName="+names)...)...)
		openssl("x509", "-req", "-in", path(name+".csr"), "-CA", path("ca.pem"),
			"-CAkey", path("ca.key"), "-CAcreateserial", "-copy_extensions", "copyall",
			"-days", "2", "-out", path(name+".pem"))
	}
	if err := os.Mkdir(path("anchors"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "anchors", "ca.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	openssl("rehash", path("anchors"))
	return dir
}

// requiringServer opens a server with the authority's server certificate
// that requires client certificates the authority signed.
func requiringServer(t *testing.T, dir string) (*nq.Communicator, int) {
	t.Helper()
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), TLS: &nq.TLS{
		KeyFile:    filepath.Join(dir, "server.key"),
		CertFile:   filepath.Join(dir, "server.pem"),
		CAFile:     filepath.Join(dir, "ca.pem"),
		ClientAuth: nq.ClientCertRequired,
	}})
	port, _ := s.LocalPort()
	return s, port
}

// roundTrip sends a message from c to s and an answer back.
func roundTrip(t *testing.T, s, c *nq.Communicator) {
	t.Helper()
	if err := c.Put([]byte("hello")).Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	req := get(t, s)
	if req.Peer != c.ID() || string(req.Data) != "hello" {
		t.Fatalf("server got %q from %v", req.Data, req.Peer)
	}
	s.Put([]byte("welcome"), req.Peer)
	if m := get(t, c); string(m.Data) != "welcome" {
		t.Fatalf("client got %q", m.Data)
	}
}

func identity(t *testing.T, c *nq.Communicator, peer nq.ID) string {
	t.Helper()
	text, err := c.PeerIdentity(peer)
	if err != nil {
		t.Fatalf("PeerIdentity: %v", err)
	}
	return text
}

func TestRequiredClientCertificateServesATrustedClientAndNamesIt(t *testing.T) {
	dir := authority(t)
	s, port := requiringServer(t, dir)
	c := open(t, nq.Client, &nq.Options{Addr: addr(port), TLS: &nq.TLS{
		KeyFile:  filepath.Join(dir, "client-a.key"),
		CertFile: filepath.Join(dir, "client-a.pem"),
		CAFile:   filepath.Join(dir, "ca.pem"),
	}})
	roundTrip(t, s, c)
	if got := identity(t, s, c.ID()); got != clientAIdentity {
		t.Fatalf("server sees the client as %q", got)
	}
	sid, _ := c.ServerID()
	if got := identity(t, c, sid); got != serverIdentity {
		t.Fatalf("client sees the server as %q", got)
	}
	if _, err := s.PeerIdentity(nq.NewID()); !errors.Is(err, nq.ErrNoPeer) {
		t.Fatalf("a stranger's identity: %v, want ErrNoPeer", err)
	}
}

func TestRequiredClientCertificateRefusesAClientWithoutOne(t *testing.T) {
	dir := authority(t)
	s, port := requiringServer(t, dir)
	// The client's form of old: a lone CertFile is what it trusts.
	c := open(t, nq.Client, &nq.Options{Addr: addr(port),
		TLS: &nq.TLS{CertFile: filepath.Join(dir, "ca.pem")}})
	if _, err := c.Get(ctx(t)); !errors.Is(err, nq.ErrAuth) {
		t.Fatalf("Get: %v, want ErrAuth", err)
	}
	if err := c.Close(); !errors.Is(err, nq.ErrAuth) {
		t.Fatalf("Close: %v, want ErrAuth", err)
	}
	if peers, err := s.Peers(); err != nil || len(peers) != 0 {
		t.Fatalf("the server lists %v (%v)", peers, err)
	}
}

func TestClientCertificatesFromPEMTextAndADirectory(t *testing.T) {
	dir := authority(t)
	text := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	s := open(t, nq.Server, &nq.Options{Addr: addr(0), TLS: &nq.TLS{
		KeyPEM: text("server.key"), CertPEM: text("server.pem"),
		CADir: filepath.Join(dir, "anchors"), ClientAuth: nq.ClientCertRequired,
		MinVersion: tls.VersionTLS13,
	}})
	port, _ := s.LocalPort()
	c := open(t, nq.Client, &nq.Options{Addr: addr(port), TLS: &nq.TLS{
		KeyPEM: text("client-a.key"), CertPEM: text("client-a.pem"), CAPEM: text("ca.pem"),
		MinVersion: tls.VersionTLS13,
	}})
	roundTrip(t, s, c)
	if got := identity(t, s, c.ID()); got != clientAIdentity {
		t.Fatalf("server sees the client as %q", got)
	}
}

func TestPlainPeersHaveAnEmptyIdentity(t *testing.T) {
	s, port := server(t)
	c := client(t, port)
	roundTrip(t, s, c)
	if got := identity(t, s, c.ID()); got != "" {
		t.Fatalf("a plain client's identity: %q", got)
	}
}

func TestTLSCredentialOptionsAreChecked(t *testing.T) {
	dir := authority(t)
	for name, o := range map[string]*nq.TLS{
		"PEM text and files": {KeyPEM: "KEY", CertPEM: "CERT", CertFile: "ca.pem"},
		"TLS 1.1":            {CertFile: "ca.pem", MinVersion: tls.VersionTLS11},
		"no anchors to check clients against": {
			KeyFile: filepath.Join(dir, "server.key"), CertFile: filepath.Join(dir, "server.pem"),
			ClientAuth: nq.ClientCertRequired},
	} {
		s, err := nq.Open(nq.TCP, nq.Server, &nq.Options{Addr: addr(0), TLS: o})
		if !errors.Is(err, nq.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		if s != nil {
			s.Close()
		}
	}
	key := &nq.TLS{KeyFile: filepath.Join(dir, "client-a.key")} // without its chain
	if _, err := nq.Open(nq.TCP, nq.Client, &nq.Options{TLS: key}); !errors.Is(err, nq.ErrInvalid) {
		t.Errorf("a client key alone: %v, want ErrInvalid", err)
	}
}
