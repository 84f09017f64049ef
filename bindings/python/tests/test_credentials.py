"""TLS client certificates (libnq >= 1.3): a server that asks clients for
certificates, clients that present them, trust anchors from a file, a
directory or PEM text, what each side learns of the other
(Communicator.identity), and the error a refused client sees.  Logins,
tokens and the secret callback (libnq >= 1.4): gRPC bearer tokens sent and
accepted, a secret asked for at every connection attempt, MQTT logins
checked by a mosquitto with a password file, and the option checks."""

import contextlib
import gc
import shutil
import subprocess
import tempfile
import threading
import uuid
import weakref
from pathlib import Path

import pytest

import nq
from conftest import TIMEOUT, Pair, mqtt_broker, options, wait_stat

CLIENT_A = "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1"
SERVER = "CN=server\nDNS:localhost\nIP:127.0.0.1"
# More names than the binding's first read of an identity holds.
LONG_NAMES = [f"replica-{n:02}.client-long.example" for n in range(16)]


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A directory holding an authority (ca.key, ca.pem), the keys and
    certificates it signed for the server, client-a and client-long (with
    LONG_NAMES), and anchors/, the authority in a directory hashed by
    openssl rehash."""
    d = tmp_path_factory.mktemp("credentials")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *new_key, "-keyout", d / "ca.key", "-out", d / "ca.pem",
            "-days", "2", "-subj", "/CN=ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    for name, names in (("server", "DNS:localhost,IP:127.0.0.1"),
                        ("client-a", "DNS:client-a.example,IP:127.0.0.1"),
                        ("client-long", ",".join(f"DNS:{n}" for n in LONG_NAMES))):
        openssl("req", "-new", *new_key, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr",
                "-subj", f"/CN={name}", "-addext", f"subjectAltName={names}")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem",
                "-CAkey", d / "ca.key", "-CAcreateserial", "-copy_extensions", "copyall",
                "-days", "2", "-out", d / f"{name}.pem")
    (d / "anchors").mkdir()
    (d / "anchors" / "ca.pem").write_bytes((d / "ca.pem").read_bytes())
    openssl("rehash", d / "anchors")
    return d


def server_requiring(certs, client_auth="required"):
    """A server with the authority's server certificate that checks client
    certificates against the authority."""
    security = nq.SecurityOptions(key=certs / "server.key", cert=certs / "server.pem",
                                  ca=certs / "ca.pem", client_auth=client_auth)
    return Pair(options(security=security))


def client_as(pair, certs, name):
    """A client of pair's server that trusts the authority and presents
    name's key and certificate."""
    return pair.client(security=nq.SecurityOptions(
        key=certs / f"{name}.key", cert=certs / f"{name}.pem", ca=certs / "ca.pem"))


def round_trip(server, client):
    client.put("hello").result(TIMEOUT)
    request = server.get(timeout=TIMEOUT)
    assert request.data == "hello" and request.peer == client.id
    server.put("welcome", request.peer).result(TIMEOUT)
    assert client.get(timeout=TIMEOUT).data == "welcome"


def test_a_server_requiring_client_certificates_serves_a_trusted_client_and_names_it(certs):
    p = server_requiring(certs)
    try:
        client = client_as(p, certs, "client-a")
        round_trip(p.server, client)
        assert p.server.identity(client.id) == CLIENT_A
        assert client.identity(client.server_id) == SERVER
        with pytest.raises(nq.NoPeer):
            p.server.identity(uuid.uuid4())
    finally:
        p.close()


def test_a_server_requiring_client_certificates_refuses_a_client_without_one(certs):
    p = server_requiring(certs)
    # net-queue's client form: cert without a key is what it trusts.
    client = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
                    options(p.port, security=nq.SecurityOptions(cert=certs / "ca.pem")))
    try:
        with pytest.raises(nq.AuthenticationError) as refused:
            client.get(timeout=TIMEOUT)
        assert isinstance(refused.value, ConnectionError)
        with pytest.raises(nq.AuthenticationError):
            client.close()
        wait_stat(p.server, "tls_errors", 1)
        assert p.server.peers() == []
    finally:
        with contextlib.suppress(nq.Error):
            client.close()
        p.close()


def test_an_optional_client_certificate_serves_clients_with_and_without(certs):
    p = server_requiring(certs, client_auth="optional")
    try:
        anonymous = p.client(security=nq.SecurityOptions(ca=certs / "ca.pem"))
        named = client_as(p, certs, "client-a")
        round_trip(p.server, anonymous)
        round_trip(p.server, named)
        assert p.server.identity(anonymous.id) == ""
        assert p.server.identity(named.id) == CLIENT_A
    finally:
        p.close()


def test_an_identity_longer_than_the_first_read_comes_whole(certs):
    p = server_requiring(certs)
    try:
        client = client_as(p, certs, "client-long")
        round_trip(p.server, client)
        expected = "\n".join(["CN=client-long"] + [f"DNS:{n}" for n in LONG_NAMES])
        assert len(expected) > 256
        assert p.server.identity(client.id) == expected
    finally:
        p.close()


def test_keys_and_anchors_as_pem_text_and_a_directory_work_as_files_do(certs):
    def text(name):
        return (certs / name).read_text()

    security = nq.SecurityOptions(key_pem=text("server.key"), cert_pem=text("server.pem"),
                                  ca_dir=certs / "anchors", client_auth="required",
                                  min_version="1.3")
    p = Pair(options(security=security))
    try:
        client = p.client(security=nq.SecurityOptions(
            key_pem=text("client-a.key"), cert_pem=text("client-a.pem"),
            ca_pem=text("ca.pem"), min_version="1.3"))
        round_trip(p.server, client)
        assert p.server.identity(client.id) == CLIENT_A
    finally:
        p.close()


def test_a_plain_peer_has_an_empty_identity(pair):
    client = pair.client()
    round_trip(pair.server, client)
    assert pair.server.identity(client.id) == ""
    assert client.identity(client.server_id) == ""


def test_security_options_keep_net_queue_order_and_check_the_new_fields(certs):
    old = nq.SecurityOptions("server.key", "server.pem")
    assert (old.key, old.certificate, old.cert, old.ca, old.client_auth) == (
        "server.key", "server.pem", "server.pem", None, None)
    with pytest.raises(ValueError, match="go together"):
        nq.SecurityOptions(key_pem="KEY")
    with pytest.raises(ValueError, match="replace key and cert"):
        nq.SecurityOptions(key_pem="KEY", cert_pem="CERT", cert="ca.pem")
    with pytest.raises(ValueError, match="client_auth"):
        nq.SecurityOptions(client_auth="always")
    with pytest.raises(ValueError, match="min_version"):
        nq.SecurityOptions(min_version="1.1")
    # Checking client certificates needs anchors to check them against.
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(security=nq.SecurityOptions(
            key=certs / "server.key", cert=certs / "server.pem", client_auth="required")))
    # A client's key needs the chain that goes with it.
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
               options(security=nq.SecurityOptions(key=certs / "client-a.key")))


# ---- logins, tokens and the secret callback (libnq >= 1.4) ----------------

TOKENS = {"tok-a": "alice", "tok-b": "bob"}


def grpc_token_server(certs, **kwargs):
    """A gRPC server over TLS with the authority's server certificate that
    accepts TOKENS."""
    security = nq.SecurityOptions(key=certs / "server.key", cert=certs / "server.pem",
                                  accept_tokens=TOKENS)
    return nq.new(nq.Protocol.GRPC, nq.Purpose.SERVER, options(security=security, **kwargs))


def grpc_client(server, certs, transport=None, **security):
    """A gRPC client of server that trusts the authority, with security's
    credentials."""
    kwargs = {} if transport is None else {"transport": transport}
    return nq.new(nq.Protocol.GRPC, nq.Purpose.CLIENT, options(
        server.local_port, security=nq.SecurityOptions(ca=certs / "ca.pem", **security),
        **kwargs))


def test_a_grpc_server_accepting_tokens_serves_a_client_with_one_and_names_it(certs):
    with grpc_token_server(certs) as server:
        with grpc_client(server, certs, token="tok-b") as client:
            round_trip(server, client)
            assert server.identity(client.id) == "token:bob"


def expect_refused(client, error=nq.AuthenticationError):
    """client's get raises error; client is closed."""
    try:
        with pytest.raises(error):
            client.get(timeout=TIMEOUT)
    finally:
        with contextlib.suppress(nq.Error):
            client.close()


def test_a_grpc_client_with_a_wrong_or_no_token_gets_the_authentication_error(certs):
    with grpc_token_server(certs) as server:
        for security in ({"token": "tok-c"}, {}):
            expect_refused(grpc_client(server, certs, **security))
        assert server.peers() == []
        wait_stat(server, "refused", 2)


def test_the_secret_callback_gives_the_token_of_every_connection_attempt(certs):
    given = iter(["tok-c", "tok-a", "tok-a"])
    calls = []

    def secret():
        calls.append(threading.current_thread().name)
        return next(given)

    with grpc_token_server(certs) as server:
        with grpc_client(server, certs, secret=secret,
                         transport=nq.TransportOptions(reconnect=0.05)) as client:
            wait_stat(server, "peers", 1)
            round_trip(server, client)
            round_trip(server, client)
            assert server.identity(client.id) == "token:alice"
            # tok-c was refused, tok-a let the second attempt in; the calls
            # of a connected client do not ask again.
            assert len(calls) == 2
            assert server.stats()["refused"] == 1


@pytest.mark.parametrize("secret, warning", [
    (lambda: 1 / 0, "ZeroDivisionError"),
    (lambda: 42, "returned int"),
    (lambda: "t" * (1 << 20), "more than the"),
])
def test_a_failing_secret_callback_fails_the_attempt_and_says_why(certs, secret, warning):
    with grpc_token_server(certs) as server:
        with pytest.warns(RuntimeWarning, match=warning):
            expect_refused(grpc_client(server, certs, secret=secret))


def test_the_secret_callback_is_let_go_with_its_communicator(certs):
    class Vault:
        def token(self):
            return b"tok-a"

    vault = Vault()
    alive = weakref.ref(vault)
    with grpc_token_server(certs) as server:
        client = grpc_client(server, certs, secret=vault.token)
        del vault
        gc.collect()
        round_trip(server, client)
        assert server.identity(client.id) == "token:alice"
        assert alive() is not None
        client.close()
        del client
        gc.collect()
        assert alive() is None


def test_the_server_name_decides_which_certificate_a_grpc_client_accepts(certs):
    with grpc_token_server(certs) as server:
        with grpc_client(server, certs, token="tok-a", server_name="localhost") as client:
            round_trip(server, client)
        expect_refused(grpc_client(server, certs, token="tok-a", server_name="elsewhere.example",
                                   transport=nq.TransportOptions(handshake_timeout=2)),
                       nq.TLSError)


def test_credential_options_are_checked_with_clear_errors(certs):
    with pytest.raises(ValueError, match="user is empty"):
        nq.SecurityOptions(user="", password="pw")
    with pytest.raises(ValueError, match="password needs a user"):
        nq.SecurityOptions(password="pw")
    with pytest.raises(TypeError, match="alpn is a list of protocol names, not str"):
        nq.SecurityOptions(alpn="x-amzn-mqtt-ca")
    with pytest.raises(ValueError, match="alpn protocol 'a,b'"):
        nq.SecurityOptions(alpn=["a,b"])
    with pytest.raises(ValueError, match="alpn protocol ''"):
        nq.SecurityOptions(alpn=["mqtt", ""])
    with pytest.raises(ValueError, match="alpn protocol"):
        nq.SecurityOptions(alpn=["x" * 256])
    with pytest.raises(ValueError, match="alpn is empty"):
        nq.SecurityOptions(alpn=[])
    with pytest.raises(ValueError, match="accept_tokens"):
        nq.SecurityOptions(accept_tokens={"": "nobody"})
    with pytest.raises(TypeError, match="secret is a callable"):
        nq.SecurityOptions(secret="tok-a")
    assert nq.SecurityOptions(alpn=("a", "b")).alpn == ("a", "b")
    # libnq's own checks: a token never goes in clear, a token with a
    # space is no bearer token, and TCP takes no login.
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.GRPC, nq.Purpose.CLIENT,
               options(security=nq.SecurityOptions(token="tok-a", tls=False)))
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.GRPC, nq.Purpose.CLIENT,
               options(security=nq.SecurityOptions(ca=certs / "ca.pem", token="tok a")))
    with pytest.raises(nq.NotSupported):
        nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
               options(security=nq.SecurityOptions(user="alice", password="pw")))
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.MQTT, nq.Purpose.CLIENT,
               options(transport=nq.TransportOptions(mqtt_max_publish=10)))


def test_the_new_fields_come_after_both_generations_fields():
    security = nq.SecurityOptions("k", "c", user="u", password="p", server_name="host")
    assert (security.key, security.cert, security.user, security.password) == ("k", "c", "u", "p")
    transport = nq.TransportOptions(mqtt_client_id="dev-1", mqtt_max_publish=131072)
    assert (transport.mqtt_client_id, transport.mqtt_max_publish) == ("dev-1", 131072)


@pytest.fixture
def login_broker(tmp_path):
    """A mosquitto that wants logins: server/server-pw and alice/alice-pw.
    The password file is in a directory of its own that every user may
    read, as mosquitto reads it after dropping its privileges."""
    shared = Path(tempfile.mkdtemp(prefix="nq-logins-"))
    shared.chmod(0o755)
    try:
        yield from _login_broker(tmp_path, shared)
    finally:
        shutil.rmtree(shared)


def _login_broker(tmp_path, shared):
    passwords = shared / "passwords"
    for n, (user, password) in enumerate((("server", "server-pw"), ("alice", "alice-pw"))):
        subprocess.run(["mosquitto_passwd", *([] if n else ["-c"]), "-b", str(passwords),
                        user, password], check=True, capture_output=True)
    passwords.chmod(0o644)
    conf = tmp_path / "logins.conf"
    conf.write_text(f"allow_anonymous false\npassword_file {passwords}\n")
    with mqtt_broker(tmp_path / "broker", conf) as port:
        yield port


def mqtt_as(purpose, port, **login):
    """An MQTT communicator of the broker on port, with login's user and
    password or secret (none without), under a client id of its own."""
    security = nq.SecurityOptions(**login) if login else None
    return nq.new(nq.Protocol.MQTT, purpose, options(port, security=security,
                  transport=nq.TransportOptions(mqtt_client_id=f"py-{uuid.uuid4().hex[:8]}")))


def test_mqtt_logins_are_checked_by_the_broker(login_broker):
    with mqtt_as(nq.Purpose.SERVER, login_broker, user="server", password="server-pw") as server:
        with mqtt_as(nq.Purpose.CLIENT, login_broker, user="alice", password="alice-pw") as a:
            round_trip(server, a)
        calls = []
        with mqtt_as(nq.Purpose.CLIENT, login_broker, user="alice",
                     secret=lambda: calls.append(1) or "alice-pw") as b:
            round_trip(server, b)
            assert calls == [1]
        with pytest.raises(nq.AuthenticationError):
            mqtt_as(nq.Purpose.CLIENT, login_broker, user="alice", password="wrong")
        with pytest.raises(nq.AuthenticationError):
            mqtt_as(nq.Purpose.CLIENT, login_broker)  # no login at all
