package nq_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libnq/libnq/bindings/go/nq"
)

// Logins, tokens and the secret callback (libnq >= 1.4).

var acceptedTokens = map[string]string{"tok-a": "alice", "tok-b": "bob"}

// tokenServer opens a gRPC server over TLS, with the authority's server
// certificate, that accepts acceptedTokens.
func tokenServer(t *testing.T, dir string) (*nq.Communicator, int) {
	t.Helper()
	s := openOver(t, nq.GRPC, nq.Server, &nq.Options{Addr: addr(0), TLS: &nq.TLS{
		KeyFile:      filepath.Join(dir, "server.key"),
		CertFile:     filepath.Join(dir, "server.pem"),
		AcceptTokens: acceptedTokens,
	}})
	port, _ := s.LocalPort()
	return s, port
}

// tokenClient opens a gRPC client of the server on port that trusts the
// authority and sends token (none: "").
func tokenClient(t *testing.T, dir string, port int, token string, o nq.Options) *nq.Communicator {
	t.Helper()
	o.Addr = addr(port)
	o.TLS = &nq.TLS{CAFile: filepath.Join(dir, "ca.pem"), Token: token}
	return openOver(t, nq.GRPC, nq.Client, &o)
}

func TestGRPCServerAcceptingTokensServesAClientWithOneAndNamesIt(t *testing.T) {
	dir := authority(t)
	s, port := tokenServer(t, dir)
	c := tokenClient(t, dir, port, "tok-b", nq.Options{})
	roundTrip(t, s, c)
	if got := identity(t, s, c.ID()); got != "token:bob" {
		t.Fatalf("server sees the client as %q, want token:bob", got)
	}
}

func TestGRPCClientWithAWrongOrNoTokenGetsErrAuth(t *testing.T) {
	dir := authority(t)
	s, port := tokenServer(t, dir)
	for _, token := range []string{"tok-c", ""} {
		c := tokenClient(t, dir, port, token, nq.Options{})
		if _, err := c.Get(ctx(t)); !errors.Is(err, nq.ErrAuth) {
			t.Fatalf("token %q: Get: %v, want ErrAuth", token, err)
		}
		if err := c.Close(); !errors.Is(err, nq.ErrAuth) {
			t.Fatalf("token %q: Close: %v, want ErrAuth", token, err)
		}
	}
	if peers, err := s.Peers(); err != nil || len(peers) != 0 {
		t.Fatalf("the server lists %v (%v)", peers, err)
	}
}

func TestSecretGivesTheTokenOfEveryConnectionAttempt(t *testing.T) {
	dir := authority(t)
	s, port := tokenServer(t, dir)
	var calls atomic.Int32
	tokens := []string{"tok-c", "tok-a"} // refused, then accepted
	secret := func() (string, error) {
		n := int(calls.Add(1)) - 1
		return tokens[min(n, len(tokens)-1)], nil
	}
	c := tokenClient(t, dir, port, "", nq.Options{Secret: secret, Reconnect: 50 * time.Millisecond})
	waitPeers(t, s, 1)
	roundTrip(t, s, c)
	roundTrip(t, s, c)
	if got := identity(t, s, c.ID()); got != "token:alice" {
		t.Fatalf("server sees the client as %q, want token:alice", got)
	}
	// The calls of a connected client do not ask again.
	if n := calls.Load(); n != 2 {
		t.Fatalf("the secret was asked %d times, want 2 (one per attempt)", n)
	}
}

func TestAFailingSecretFailsTheAttemptWithErrAuth(t *testing.T) {
	dir := authority(t)
	_, port := tokenServer(t, dir)
	for name, secret := range map[string]func() (string, error){
		"error":     func() (string, error) { return "", errors.New("vault unreachable") },
		"panic":     func() (string, error) { panic("vault unreachable") },
		"too large": func() (string, error) { return strings.Repeat("t", 1<<20), nil },
	} {
		c := tokenClient(t, dir, port, "", nq.Options{Secret: secret})
		if _, err := c.Get(ctx(t)); !errors.Is(err, nq.ErrAuth) {
			t.Fatalf("%s: Get: %v, want ErrAuth", name, err)
		}
	}
}

func TestServerNameDecidesWhichCertificateAGRPCClientAccepts(t *testing.T) {
	dir := authority(t)
	s, port := tokenServer(t, dir)
	for name, want := range map[string]error{"localhost": nil, "elsewhere.example": nq.ErrTLS} {
		c := openOver(t, nq.GRPC, nq.Client, &nq.Options{Addr: addr(port),
			HandshakeTimeout: 2 * time.Second, TLS: &nq.TLS{
				CAFile: filepath.Join(dir, "ca.pem"), Token: "tok-a", ServerName: name}})
		if want == nil {
			roundTrip(t, s, c)
		} else if _, err := c.Get(ctx(t)); !errors.Is(err, want) {
			t.Fatalf("server name %s: Get: %v, want %v", name, err, want)
		}
	}
}

func TestCredentialOptionsAreChecked(t *testing.T) {
	dir := authority(t)
	ca := filepath.Join(dir, "ca.pem")
	for name, c := range map[string]struct {
		protocol nq.Protocol
		opts     nq.Options
		want     error
	}{
		"empty user":            {nq.MQTT, nq.Options{Login: &nq.Login{Password: "pw"}}, nq.ErrInvalid},
		"empty ALPN name":       {nq.MQTT, nq.Options{TLS: &nq.TLS{CAFile: ca, ALPN: []string{"mqtt", ""}}}, nq.ErrInvalid},
		"ALPN name with comma":  {nq.MQTT, nq.Options{TLS: &nq.TLS{CAFile: ca, ALPN: []string{"a,b"}}}, nq.ErrInvalid},
		"ALPN name too long":    {nq.MQTT, nq.Options{TLS: &nq.TLS{CAFile: ca, ALPN: []string{strings.Repeat("x", 256)}}}, nq.ErrInvalid},
		"token with a space":    {nq.GRPC, nq.Options{TLS: &nq.TLS{CAFile: ca, Token: "tok a"}}, nq.ErrInvalid},
		"token without TLS":     {nq.GRPC, nq.Options{Secret: func() (string, error) { return "tok-a", nil }}, nq.ErrInvalid},
		"largest publish":       {nq.MQTT, nq.Options{MQTTMaxPublish: 10}, nq.ErrInvalid},
		"a login over TCP":      {nq.TCP, nq.Options{Login: &nq.Login{User: "alice"}}, nq.ErrNotSupported},
		"a client id over gRPC": {nq.GRPC, nq.Options{MQTTClientID: "dev-1"}, nq.ErrNotSupported},
	} {
		c.opts.Addr = addr(1)
		comm, err := nq.Open(c.protocol, nq.Client, &c.opts)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
		if comm != nil {
			comm.Close()
		}
	}
}

// loginBroker starts a private mosquitto (tests/mqtt-broker.sh) that wants
// the logins server/server-pw and alice/alice-pw, stopped when the test
// ends; it returns the broker's port.
func loginBroker(t *testing.T) int {
	t.Helper()
	// mosquitto reads the password file after dropping its privileges.
	shared, err := os.MkdirTemp("", "nq-logins-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	passwords := filepath.Join(shared, "passwords")
	for i, login := range [][2]string{{"server", "server-pw"}, {"alice", "alice-pw"}} {
		args := []string{"-b", passwords, login[0], login[1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
	}
	if err := os.Chmod(passwords, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(shared, "logins.conf")
	if err := os.WriteFile(conf, []byte("allow_anonymous false\npassword_file "+passwords+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "..", "tests", "mqtt-broker.sh"))
	if err != nil {
		t.Fatal(err)
	}
	brokerDir := filepath.Join(shared, "broker")
	out, err := exec.Command("bash", script, "start", brokerDir, conf).Output()
	if err != nil {
		t.Fatalf("mqtt-broker.sh start: %v", err)
	}
	t.Cleanup(func() { exec.Command("bash", script, "stop", brokerDir).Run() })
	port, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("mqtt-broker.sh printed %q", out)
	}
	return port
}

func TestMQTTLoginsAreCheckedByTheBroker(t *testing.T) {
	port := loginBroker(t)
	openMQTT := func(purpose nq.Purpose, o nq.Options) (*nq.Communicator, error) {
		o.Addr = addr(port)
		o.MQTTClientID = "go-" + nq.NewID().String()[:8]
		c, err := nq.Open(nq.MQTT, purpose, &o)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	s, err := openMQTT(nq.Server, nq.Options{Login: &nq.Login{User: "server", Password: "server-pw"}})
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	var calls atomic.Int32
	c, err := openMQTT(nq.Client, nq.Options{Login: &nq.Login{User: "alice"},
		Secret: func() (string, error) { calls.Add(1); return "alice-pw", nil }})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	roundTrip(t, s, c)
	if n := calls.Load(); n != 1 {
		t.Fatalf("the secret was asked %d times, want 1", n)
	}
	for name, login := range map[string]*nq.Login{
		"a wrong password": {User: "alice", Password: "wrong"},
		"no login":         nil,
	} {
		if _, err := openMQTT(nq.Client, nq.Options{Login: login}); !errors.Is(err, nq.ErrAuth) {
			t.Errorf("%s: %v, want ErrAuth", name, err)
		}
	}
}
