package org.libnq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Logins, tokens and the secret callback (libnq 1.4): gRPC bearer tokens sent and accepted, a
 * secret asked for at every connection attempt, an MQTT login checked by a mosquitto with a
 * password file, and the option checks.
 */
@Timeout(60)
class CredentialsTest extends Tracking {
    private Communicator open(Protocol protocol, Purpose purpose, Options.Builder b)
            throws NqException {
        return track(Communicator.open(protocol, purpose, b.build()));
    }

    /** A gRPC server over TLS with the authority's server certificate accepting two tokens. */
    private Communicator tokenServer(Path dir) throws NqException {
        return open(Protocol.GRPC, Purpose.SERVER, Options.builder()
                .address("127.0.0.1", 0)
                .tlsIdentity(dir.resolve("server.key"), dir.resolve("server.pem"))
                .acceptToken("tok-a", "alice")
                .acceptToken("tok-b", "bob"));
    }

    /** A gRPC client of s that trusts the authority, with b's credentials. */
    private Communicator tokenClient(Communicator s, Path dir, Options.Builder b)
            throws NqException {
        return open(Protocol.GRPC, Purpose.CLIENT,
                b.address("127.0.0.1", s.localPort()).tlsTrust(dir.resolve("ca.pem")));
    }

    private static void assertRefused(Communicator c) {
        assertEquals(NqError.AUTH, assertThrows(NqException.class, () -> c.get(WAIT)).error());
    }

    @Test
    void grpcServerAcceptingTokensServesAClientWithOneAndNamesIt(@TempDir Path dir)
            throws Exception {
        CommunicatorTest.authority(dir);
        Communicator s = tokenServer(dir);
        Communicator c = tokenClient(s, dir, Options.builder().token("tok-b"));
        CommunicatorTest.roundTrip(s, c);
        assertEquals("token:bob", s.peerIdentity(c.id()));
    }

    @Test
    void grpcClientWithAWrongOrNoTokenIsRefused(@TempDir Path dir) throws Exception {
        CommunicatorTest.authority(dir);
        Communicator s = tokenServer(dir);
        Communicator wrong = tokenClient(s, dir, Options.builder().token("tok-c"));
        assertRefused(wrong);
        assertEquals(NqError.AUTH, assertThrows(NqException.class, wrong::close).error());
        assertRefused(tokenClient(s, dir, Options.builder()));
        assertEquals(List.of(), s.peers());
    }

    @Test
    void secretGivesTheTokenOfEveryConnectionAttempt(@TempDir Path dir) throws Exception {
        CommunicatorTest.authority(dir);
        Communicator s = tokenServer(dir);
        AtomicInteger calls = new AtomicInteger();
        // Refused first, accepted on the attempt after.
        SecretSource source = () -> calls.getAndIncrement() == 0 ? "tok-c" : "tok-a";
        Communicator c = tokenClient(s, dir, Options.builder().secret(source)
                .reconnect(Duration.ofMillis(50), Duration.ofMillis(200)));
        long end = System.nanoTime() + WAIT.toNanos();
        while (s.peers().isEmpty()) {
            assertTrue(System.nanoTime() < end, "the client did not connect");
            Thread.sleep(10);
        }
        CommunicatorTest.roundTrip(s, c);
        CommunicatorTest.roundTrip(s, c);
        assertEquals("token:alice", s.peerIdentity(c.id()));
        // The calls of a connected client do not ask again.
        assertEquals(2, calls.get());
    }

    @Test
    void aFailingSecretFailsTheAttemptAndSaysWhy(@TempDir Path dir) throws Exception {
        CommunicatorTest.authority(dir);
        Communicator s = tokenServer(dir);
        BlockingQueue<Throwable> told = new LinkedBlockingQueue<>();
        Thread.UncaughtExceptionHandler before = Thread.getDefaultUncaughtExceptionHandler();
        Thread.setDefaultUncaughtExceptionHandler((t, e) -> told.add(e));
        try {
            assertRefused(tokenClient(s, dir, Options.builder().secret(() -> {
                throw new IllegalStateException("vault unreachable");
            })));
            Throwable e = told.poll(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            assertInstanceOf(IllegalStateException.class, e);
            assertEquals("vault unreachable", e.getMessage());
            assertRefused(tokenClient(s, dir, Options.builder().secret(() -> null)));
        } finally {
            Thread.setDefaultUncaughtExceptionHandler(before);
        }
    }

    @Test
    void serverNameDecidesWhichCertificateAGrpcClientAccepts(@TempDir Path dir)
            throws Exception {
        CommunicatorTest.authority(dir);
        Communicator s = tokenServer(dir);
        CommunicatorTest.roundTrip(s, tokenClient(s, dir, Options.builder().token("tok-a")
                .tlsServerName("localhost")));
        Communicator elsewhere = tokenClient(s, dir, Options.builder().token("tok-a")
                .tlsServerName("elsewhere.example").handshakeTimeout(Duration.ofSeconds(2)));
        assertEquals(NqError.TLS,
                assertThrows(NqException.class, () -> elsewhere.get(WAIT)).error());
    }

    @Test
    void credentialOptionsAreChecked() throws Exception {
        Options.Builder b = Options.builder();
        assertEquals("login: the user is empty",
                assertThrows(IllegalArgumentException.class, () -> b.login("", "pw")).getMessage());
        assertEquals("tlsAlpn: no protocol given",
                assertThrows(IllegalArgumentException.class, () -> b.tlsAlpn()).getMessage());
        assertEquals("tlsAlpn: \"a,b\" is not a protocol name of 1 to 255 bytes without a comma",
                assertThrows(IllegalArgumentException.class, () -> b.tlsAlpn("mqtt", "a,b"))
                        .getMessage());
        assertThrows(IllegalArgumentException.class, () -> b.tlsAlpn("x".repeat(256)));
        assertThrows(IllegalArgumentException.class, () -> b.tlsAlpn(""));
        assertThrows(IllegalArgumentException.class, () -> b.token(""));
        assertThrows(IllegalArgumentException.class, () -> b.mqttClientId(""));
        assertThrows(NullPointerException.class, () -> b.secret(null));
        // libnq's own checks: a token never travels in clear, TCP takes no login.
        NqException clear = assertThrows(NqException.class, () -> Communicator.open(Protocol.GRPC,
                Purpose.CLIENT, Options.builder().token("tok-a").build()));
        assertEquals(NqError.INVALID, clear.error());
        NqException tcp = assertThrows(NqException.class, () -> Communicator.open(Protocol.TCP,
                Purpose.CLIENT, Options.builder().login("alice", "pw").build()));
        assertEquals(NqError.NOT_SUPPORTED, tcp.error());
        NqException publish = assertThrows(NqException.class, () -> Communicator.open(
                Protocol.MQTT, Purpose.CLIENT, Options.builder().mqttMaxPublish(10).build()));
        assertEquals(NqError.INVALID, publish.error());
    }

    private static void run(String... command) throws Exception {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), String.join(" ", command) + ": " + out);
    }

    @Test
    void mqttLoginsAreCheckedByTheBroker() throws Exception {
        // mosquitto reads the password file after dropping its privileges.
        Path shared = Files.createTempDirectory("nq-logins-",
                PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwxr-xr-x")));
        Path script = Path.of("..", "..", "tests", "mqtt-broker.sh").toAbsolutePath();
        Path broker = shared.resolve("broker");
        try {
            Path passwords = shared.resolve("passwords");
            run("mosquitto_passwd", "-c", "-b", passwords.toString(), "server", "server-pw");
            run("mosquitto_passwd", "-b", passwords.toString(), "alice", "alice-pw");
            Files.setPosixFilePermissions(passwords, PosixFilePermissions.fromString("rw-r--r--"));
            Path conf = Files.writeString(shared.resolve("logins.conf"),
                    "allow_anonymous false\npassword_file " + passwords + "\n");
            Process start = new ProcessBuilder("bash", script.toString(), "start",
                    broker.toString(), conf.toString()).redirectError(ProcessBuilder.Redirect.INHERIT)
                    .start();
            String port = new String(start.getInputStream().readAllBytes(), StandardCharsets.UTF_8)
                    .trim();
            assertEquals(0, start.waitFor(), "mqtt-broker.sh start");

            Communicator s = open(Protocol.MQTT, Purpose.SERVER, mqtt(port)
                    .login("server", "server-pw"));
            AtomicInteger calls = new AtomicInteger();
            Communicator c = open(Protocol.MQTT, Purpose.CLIENT, mqtt(port).login("alice", null)
                    .secret(() -> {
                        calls.incrementAndGet();
                        return "alice-pw";
                    }));
            CommunicatorTest.roundTrip(s, c);
            assertEquals(1, calls.get());
            NqException wrong = assertThrows(NqException.class, () -> Communicator.open(
                    Protocol.MQTT, Purpose.CLIENT, mqtt(port).login("alice", "wrong").build()));
            assertEquals(NqError.AUTH, wrong.error());
            NqException none = assertThrows(NqException.class, () -> Communicator.open(
                    Protocol.MQTT, Purpose.CLIENT, mqtt(port).build()));
            assertEquals(NqError.AUTH, none.error());
        } finally {
            closeAll();
            run("bash", script.toString(), "stop", broker.toString());
            try (var files = Files.walk(shared)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    /** Options of an MQTT communicator of the broker on port, with a client id of its own. */
    private static Options.Builder mqtt(String port) {
        return Options.builder().address("127.0.0.1", Integer.parseInt(port))
                .mqttClientId("java-" + UUID.randomUUID().toString().substring(0, 8));
    }
}
