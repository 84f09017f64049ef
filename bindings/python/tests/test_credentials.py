"""TLS client certificates (libnq >= 1.3): a server that asks clients for
certificates, clients that present them, trust anchors from a file, a
directory or PEM text, what each side learns of the other
(Communicator.identity), and the error a refused client sees."""

import contextlib
import subprocess
import uuid

import pytest

import nq
from conftest import TIMEOUT, Pair, options, wait_stat

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
