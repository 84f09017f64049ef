package org.libnq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(60)
class CommunicatorTest extends Tracking {
    private Communicator server(Options.Builder b) throws NqException {
        return track(Communicator.open(Protocol.TCP, Purpose.SERVER, b.address("127.0.0.1", 0).build()));
    }

    private Communicator server() throws NqException {
        return server(Options.builder());
    }

    private Communicator client(Communicator server, Options.Builder b) throws NqException {
        return track(Communicator.open(Protocol.TCP, Purpose.CLIENT,
                b.address("127.0.0.1", server.localPort()).build()));
    }

    private Communicator client(Communicator server) throws NqException {
        return client(server, Options.builder());
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String text(Message m) {
        return new String(m.data(), StandardCharsets.UTF_8);
    }

    private static void awaitPeers(Communicator server, int n) throws Exception {
        long end = System.nanoTime() + WAIT.toNanos();
        while (server.peers().size() < n) {
            assertTrue(System.nanoTime() < end, "clients did not connect");
            Thread.sleep(10);
        }
    }

    private static NqException failure(CompletableFuture<Void> f) throws Exception {
        ExecutionException e = assertThrows(ExecutionException.class,
                () -> f.get(WAIT.toMillis(), TimeUnit.MILLISECONDS));
        return assertInstanceOf(NqException.class, e.getCause());
    }

    @Test
    void clientPutReachesServerWithClientId() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        c.put(bytes("hello")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message m = s.get(WAIT);
        assertEquals("hello", text(m));
        assertEquals(c.id(), m.peer());
    }

    @Test
    void serverReplyReachesClientWithServerId() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        c.put(bytes("ping"));
        Message request = s.get(WAIT);
        s.put(bytes("pong"), request.peer()).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message reply = c.get(WAIT);
        assertEquals("pong", text(reply));
        assertEquals(s.id(), reply.peer());
        assertEquals(s.id(), c.serverId().orElseThrow());
    }

    @Test
    void broadcastReachesEveryClient() throws Exception {
        Communicator s = server();
        List<Communicator> clients = List.of(client(s), client(s), client(s));
        awaitPeers(s, 3);
        s.put(bytes("all")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        for (Communicator c : clients) {
            assertEquals("all", text(c.get(WAIT)));
        }
    }

    @Test
    void targetedPutReachesOnlyThatClient() throws Exception {
        Communicator s = server();
        Communicator first = client(s);
        Communicator second = client(s);
        awaitPeers(s, 2);
        s.put(bytes("only you"), second.id()).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("only you", text(second.get(WAIT)));
        assertThrows(TimeoutException.class, () -> first.get(Duration.ofMillis(200)));
    }

    @Test
    void directBuffersAreSentFromPositionToLimit() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        ByteBuffer direct = ByteBuffer.allocateDirect(64);
        direct.put(bytes("xxpayloadyy")).flip().position(2).limit(9);
        c.put(direct).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        ByteBuffer heap = ByteBuffer.wrap(bytes("--heap--"), 2, 4);
        c.put(heap).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        c.put(new byte[0]).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("payload", text(s.get(WAIT)));
        assertEquals("heap", text(s.get(WAIT)));
        assertEquals(0, s.get(WAIT).data().length);
        assertEquals(2, direct.position(), "put must not move the buffer's position");
    }

    @Test
    void messagesKeepTheirOrderAndLargeOnesArriveWhole() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        List<CompletableFuture<Void>> futures = new ArrayList<>();
        for (int i = 0; i < 300; i++) {
            futures.add(c.put(bytes(Integer.toString(i))));
        }
        CompletableFuture.allOf(futures.toArray(new CompletableFuture[0]))
                .get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        for (int i = 0; i < 300; i++) {
            assertEquals(Integer.toString(i), text(s.get(WAIT)));
        }
        byte[] big = new byte[12 << 20];
        for (int i = 0; i < big.length; i++) {
            big[i] = (byte) (i * 31);
        }
        c.put(big).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertArrayEquals(big, s.get(WAIT).data());
    }

    @Test
    void futureFailsForAPeerThatIsNotConnected() throws Exception {
        Communicator s = server();
        assertEquals(NqError.NO_PEER, failure(s.put(bytes("nobody"), UUID.randomUUID())).error());
    }

    @Test
    void futureFailsWhenTheServerCannotBeReached() throws Exception {
        Communicator s = Communicator.open(Protocol.TCP, Purpose.SERVER,
                Options.builder().address("127.0.0.1", 0).build());
        int port = s.localPort();
        s.close();
        Communicator c = Communicator.open(Protocol.TCP, Purpose.CLIENT,
                Options.builder().address("127.0.0.1", port).build());
        assertEquals(NqError.CONNECTION_REFUSED, failure(c.put(bytes("hello"))).error());
        NqException e = assertThrows(NqException.class, () -> c.get(WAIT));
        assertEquals(NqError.CONNECTION_REFUSED, e.error());
        assertEquals(NqError.CONNECTION_REFUSED, assertThrows(NqException.class, c::close).error());
        c.close(); // later calls return quietly
    }

    @Test
    void putAfterCloseFails() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        c.close();
        assertEquals(NqError.CLOSED, failure(c.put(bytes("late"))).error());
    }

    @Test
    void clientPutWithPeersIsRefused() throws Exception {
        Communicator c = client(server());
        assertThrows(IllegalArgumentException.class, () -> c.put(bytes("x"), UUID.randomUUID()));
    }

    @Test
    void getAfterCloseReturnsQueuedMessagesThenClosed() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        c.put(bytes("before close")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        c.close(); // sends FIN after the data; the server's close waits for it
        s.close();
        assertEquals("before close", text(s.get(WAIT)));
        assertEquals(NqError.CLOSED, assertThrows(NqException.class, () -> s.get(WAIT)).error());
        assertEquals(NqError.CLOSED, assertThrows(NqException.class, s::get).error());
    }

    @Test
    void getTimesOut() throws Exception {
        Communicator s = server();
        long start = System.nanoTime();
        assertThrows(TimeoutException.class, () -> s.get(Duration.ofMillis(300)));
        long ms = (System.nanoTime() - start) / 1_000_000;
        assertTrue(ms >= 250 && ms < 5000, "waited " + ms + " ms");
    }

    /** What a get() blocked in another thread ends with, after {@code then} ran. */
    private static Throwable blockedGetEndsWith(Communicator c, ThrowingConsumer<Thread> then)
            throws Exception {
        CompletableFuture<Throwable> outcome = new CompletableFuture<>();
        Thread reader = new Thread(() -> {
            try {
                c.get();
                outcome.complete(null);
            } catch (Throwable t) {
                outcome.complete(t);
            }
        });
        reader.start();
        Thread.sleep(100);
        then.accept(reader);
        return outcome.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
    }

    private interface ThrowingConsumer<T> {
        void accept(T t) throws Exception;
    }

    @Test
    void blockedGetSeesInterrupts() throws Exception {
        Communicator s = server();
        assertInstanceOf(InterruptedException.class, blockedGetEndsWith(s, Thread::interrupt));
    }

    @Test
    void blockedGetEndsWithClose() throws Exception {
        Communicator c = client(server());
        Throwable t = blockedGetEndsWith(c, reader -> c.close());
        assertEquals(NqError.CLOSED, assertInstanceOf(NqException.class, t).error());
    }

    @Test
    void manyThreadsPutAtOnce() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        List<Thread> threads = new ArrayList<>();
        List<CompletableFuture<Void>> futures = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int t = 0; t < 6; t++) {
            int base = t * 1000;
            threads.add(new Thread(() -> {
                for (int i = 0; i < 50; i++) {
                    futures.add(c.put(bytes(Integer.toString(base + i))));
                }
            }));
        }
        threads.forEach(Thread::start);
        for (Thread t : threads) {
            t.join();
        }
        CompletableFuture.allOf(futures.toArray(new CompletableFuture[0]))
                .get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Set<String> seen = new HashSet<>();
        for (int i = 0; i < 300; i++) {
            seen.add(text(s.get(WAIT)));
        }
        assertEquals(300, seen.size());
    }

    @Test
    void optionsAreAppliedAndChecked() throws Exception {
        Communicator s = server();
        UUID id = UUID.randomUUID();
        Communicator c = client(s, Options.builder().id(id).closeTimeout(Duration.ofSeconds(5)));
        assertEquals(id, c.id());
        c.put(bytes("x"));
        assertEquals(id, s.get(WAIT).peer());
        NqException bad = assertThrows(NqException.class,
                () -> server(Options.builder().workers(1000)));
        assertEquals(NqError.INVALID, bad.error());
        NqException inUse = assertThrows(NqException.class, () -> Communicator.open(Protocol.TCP,
                Purpose.SERVER, Options.builder().address("127.0.0.1", s.localPort()).build()));
        assertEquals(NqError.ADDRESS_IN_USE, inUse.error());
    }

    @Test
    void grpcRoundTrip() throws Exception {
        Communicator s = track(Communicator.open(Protocol.GRPC, Purpose.SERVER,
                Options.builder().address("127.0.0.1", 0).build()));
        Communicator c = track(Communicator.open(Protocol.GRPC, Purpose.CLIENT,
                Options.builder().address("127.0.0.1", s.localPort()).build()));
        c.put(bytes("over grpc")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message request = s.get(WAIT);
        assertEquals("over grpc", text(request));
        assertEquals(c.id(), request.peer());
        s.put(bytes("reply"), request.peer()).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("reply", text(c.get(WAIT)));
    }

    private static Path[] certificate(Path dir) throws Exception {
        Path key = dir.resolve("key.pem");
        Path cert = dir.resolve("cert.pem");
        Process p = new ProcessBuilder("openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.toString(),
                "-out", cert.toString(), "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1")
                .redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        assertEquals(0, p.waitFor(), "openssl failed");
        return new Path[] {key, cert};
    }

    @Test
    void tlsRoundTrip(@TempDir Path dir) throws Exception {
        Path[] kc = certificate(dir);
        Communicator s = server(Options.builder().tls(kc[0], kc[1]));
        Communicator c = client(s, Options.builder().tls(null, kc[1]));
        c.put(bytes("secret")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message request = s.get(WAIT);
        assertEquals("secret", text(request));
        s.put(bytes("answer"), request.peer());
        assertEquals("answer", text(c.get(WAIT)));
    }

    @Test
    void tlsClientRefusesAnUntrustedServer(@TempDir Path dir) throws Exception {
        Path[] kc = certificate(dir);
        Communicator s = server(Options.builder().tls(kc[0], kc[1]));
        Communicator c = client(s, Options.builder().tls(null, null));
        assertEquals(NqError.TLS, failure(c.put(bytes("secret"))).error());
        assertFalse(c.serverId().isPresent());
    }

    /** One peer event as a listener heard it. */
    private record Heard(String what, UUID peer, NqError reason) {
    }

    private static Heard next(BlockingQueue<Heard> heard) throws InterruptedException {
        Heard h = heard.poll(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertTrue(h != null, "no event");
        return h;
    }

    @Test
    void peerListenerHearsPeersComingAndGoing() throws Exception {
        BlockingQueue<Heard> heard = new LinkedBlockingQueue<>();
        PeerListener listener = new PeerListener() {
            @Override
            public void connected(UUID peer) {
                heard.add(new Heard("connected", peer, null));
            }

            @Override
            public void disconnected(UUID peer, NqError reason) {
                heard.add(new Heard("disconnected", peer, reason));
            }
        };
        Communicator s = server(Options.builder().peerListener(listener));
        UUID id = UUID.randomUUID();
        Communicator first = client(s, Options.builder().id(id));
        assertEquals(new Heard("connected", id, null), next(heard));
        // The same id again: the newest connection wins.
        Communicator second = client(s, Options.builder().id(id));
        assertEquals(new Heard("disconnected", id, NqError.REPLACED), next(heard));
        assertEquals(new Heard("connected", id, null), next(heard));
        NqException lost = assertThrows(NqException.class, () -> first.get(WAIT));
        assertEquals(NqError.CONNECTION_RESET, lost.error());
        second.close();
        assertEquals(new Heard("disconnected", id, null), next(heard));
        s.close();
        assertTrue(heard.isEmpty(), "events after close: " + heard);
    }

    @Test
    void reconnectingClientFollowsARestartedServer() throws Exception {
        BlockingQueue<Heard> heard = new LinkedBlockingQueue<>();
        PeerListener listener = new PeerListener() {
            @Override
            public void reconnecting(UUID server, NqError reason) {
                heard.add(new Heard("reconnecting", server, reason));
            }
        };
        Communicator first = server(Options.builder().closeTimeout(Duration.ofMillis(100)));
        int port = first.localPort();
        Communicator c = track(Communicator.open(Protocol.TCP, Purpose.CLIENT, Options.builder()
                .address("127.0.0.1", port)
                .reconnect(Duration.ofMillis(50), Duration.ofMillis(400))
                .peerListener(listener).build()));
        c.put(bytes("before")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("before", text(first.get(WAIT)));
        NqException dropped = assertThrows(NqException.class, first::close);
        assertEquals(NqError.TIMED_OUT, dropped.error());
        assertEquals(new Heard("reconnecting", first.id(), NqError.CONNECTION_RESET), next(heard));
        CompletableFuture<Void> pending = c.put(bytes("while away"));
        Communicator second = Communicator.open(Protocol.TCP, Purpose.SERVER,
                Options.builder().address("127.0.0.1", port).closeTimeout(Duration.ofSeconds(1)).build());
        try {
            Message m = second.get(WAIT);
            assertEquals("while away", text(m));
            assertEquals(c.id(), m.peer());
            pending.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            second.put(bytes("welcome back"), c.id());
            assertEquals("welcome back", text(c.get(WAIT)));
            assertEquals(second.id(), c.serverId().orElseThrow());
            c.close();
        } finally {
            second.close();
        }
    }

    /**
     * A server holding one undelivered message stops reading: the next message is written but not
     * received, and with acknowledged delivery its future waits until the server makes room.
     */
    @Test
    void acknowledgedDeliveryCompletesAFutureWhenThePeerHasIt() throws Exception {
        for (boolean acked : new boolean[] {false, true}) {
            Options.Builder sb = Options.builder().queueSize(1).closeTimeout(Duration.ofSeconds(1));
            Options.Builder cb = Options.builder();
            if (acked) {
                sb.acknowledged();
                cb.acknowledged();
            }
            Communicator s = server(sb);
            Communicator c = client(s, cb);
            c.put(bytes("first")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            Thread.sleep(200); // the server pauses after "first"
            CompletableFuture<Void> second = c.put(bytes("second"));
            if (acked) {
                assertThrows(TimeoutException.class, () -> second.get(500, TimeUnit.MILLISECONDS));
            } else {
                second.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            }
            assertEquals("first", text(s.get(WAIT)));
            assertEquals("second", text(s.get(WAIT)));
            second.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            c.close();
        }
    }

    @Test
    void getFromLeavesOtherPeersInOrderAndGetAsyncCompletes() throws Exception {
        Communicator s = server(Options.builder().closeTimeout(Duration.ofSeconds(1)));
        Communicator a = client(s, Options.builder());
        Communicator b = client(s, Options.builder());
        CompletableFuture<Message> waiting = s.getAsync();
        a.put(bytes("a1")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message first = waiting.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("a1", text(first));
        assertEquals(a.id(), first.peer());
        a.put(bytes("a2")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        b.put(bytes("b1")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message fromB = s.getFrom(WAIT, b.id());
        assertEquals("b1", text(fromB));
        assertThrows(TimeoutException.class, () -> s.getFrom(Duration.ofMillis(50), b.id()));
        assertEquals("a2", text(s.get(WAIT)));
        CompletableFuture<Message> cancelled = s.getAsync();
        cancelled.cancel(false);
        a.put(bytes("a3")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("a3", text(s.getAsync().get(WAIT.toMillis(), TimeUnit.MILLISECONDS)));
    }

    /**
     * A server holding one undelivered message stops reading, so a large message to it stays
     * partly written and what is put after it waits in the client's queue, where cancel takes it
     * back.
     */
    @Test
    void cancelWithdrawsAPutQueuedBehindALargeOne() throws Exception {
        Communicator s = server(Options.builder().queueSize(1).closeTimeout(WAIT));
        Communicator c = client(s, Options.builder().closeTimeout(WAIT));
        c.put(bytes("first")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        ByteBuffer big = ByteBuffer.allocateDirect(32 << 20);
        CompletableFuture<Void> bigFuture = c.put(big);
        CompletableFuture<Void> small = c.put(bytes("small"));
        assertTrue(small.cancel(false), "a put queued behind a large one was not withdrawn");
        assertTrue(small.isCancelled());
        assertThrows(CancellationException.class,
                () -> small.get(WAIT.toMillis(), TimeUnit.MILLISECONDS));
        assertTrue(small.cancel(false)); // still cancelled
        assertEquals("first", text(s.get(WAIT)));
        assertEquals(32 << 20, s.get(WAIT).data().length);
        bigFuture.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        c.put(bytes("after")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertEquals("after", text(s.get(WAIT)), "the withdrawn put arrived");
    }

    @Test
    void cancellingACompletedPutChangesNothing() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        CompletableFuture<Void> f = c.put(bytes("done"));
        f.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertFalse(f.cancel(false));
        assertFalse(f.isCancelled());
        assertFalse(f.isCompletedExceptionally());
        assertEquals("done", text(s.get(WAIT)));
    }

    @Test
    void nqErrorKnowsTheCanceledCode() {
        assertEquals(NqError.CANCELED, NqError.of(org.libnq.internal.nqraw.NQ_ECANCELED));
    }

    /** With dropOldest a flooding peer is never paused: its newest messages arrive, in order. */
    @Test
    void dropOldestKeepsTheNewest() throws Exception {
        Communicator s = server(Options.builder().queueSize(3).dropOldest(true));
        Communicator c = client(s);
        int n = 30;
        for (int i = 0; i < n; i++) {
            c.put(new byte[] {(byte) i}).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        }
        Thread.sleep(1000); // the last ones reach the server's queue
        java.util.List<Integer> got = new java.util.ArrayList<>();
        while (got.isEmpty() || got.get(got.size() - 1) != n - 1) {
            got.add((int) s.get(WAIT).data()[0]);
        }
        assertTrue(got.size() < n, "nothing was dropped: " + got);
        for (int i = 1; i < got.size(); i++) {
            assertEquals(got.get(i - 1) + 1, got.get(i), "not the newest in order: " + got);
        }
    }

    /** The identities the authority's certificates carry (see {@link #authority(Path)}). */
    private static final String CLIENT_A = "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1";

    private static final String SERVER = "CN=server\nDNS:localhost\nIP:127.0.0.1";

    private static void openssl(String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("openssl"));
        command.addAll(List.of(args));
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), "openssl " + args[0] + ": " + out);
    }

    /**
     * Makes in dir an authority (ca.key, ca.pem), the server's and client-a's keys and certificates
     * it signed (NAME.key, NAME.pem), and anchors/, the authority in a directory hashed by openssl
     * rehash.
     */
    static void authority(Path dir) throws Exception {
        String ec = "ec_paramgen_curve:prime256v1";
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", ec, "-nodes",
                "-keyout", dir.resolve("ca.key").toString(),
                "-out", dir.resolve("ca.pem").toString(),
                "-days", "2", "-subj", "/CN=ca", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign");
        String[][] names = {
            {"server", "DNS:localhost,IP:127.0.0.1"},
            {"client-a", "DNS:client-a.example,IP:127.0.0.1"},
        };
        for (String[] n : names) {
            openssl("req", "-new", "-newkey", "ec", "-pkeyopt", ec, "-nodes",
                    "-keyout", dir.resolve(n[0] + ".key").toString(),
                    "-out", dir.resolve(n[0] + ".csr").toString(), "-subj", "/CN=" + n[0],
                    "-addext", "subjectAltName=" + n[1]);
            openssl("x509", "-req", "-in", dir.resolve(n[0] + ".csr").toString(),
                    "-CA", dir.resolve("ca.pem").toString(),
                    "-CAkey", dir.resolve("ca.key").toString(),
                    "-CAcreateserial", "-copy_extensions", "copyall", "-days", "2",
                    "-out", dir.resolve(n[0] + ".pem").toString());
        }
        Path anchors = Files.createDirectory(dir.resolve("anchors"));
        Files.copy(dir.resolve("ca.pem"), anchors.resolve("ca.pem"));
        openssl("rehash", anchors.toString());
    }

    /** A server with the authority's server certificate that requires client certificates. */
    private Communicator requiringServer(Path dir) throws NqException {
        return server(Options.builder()
                .tlsIdentity(dir.resolve("server.key"), dir.resolve("server.pem"))
                .tlsTrust(dir.resolve("ca.pem"))
                .clientAuth(ClientAuth.REQUIRED));
    }

    static void roundTrip(Communicator s, Communicator c) throws Exception {
        c.put(bytes("hello")).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        Message request = s.get(WAIT);
        assertEquals(c.id(), request.peer());
        assertEquals("hello", text(request));
        s.put(bytes("welcome"), request.peer());
        assertEquals("welcome", text(c.get(WAIT)));
    }

    @Test
    void requiredClientCertificateServesATrustedClientAndNamesIt(@TempDir Path dir)
            throws Exception {
        authority(dir);
        Communicator s = requiringServer(dir);
        // A client's key makes tls's certificate its own chain; its trust comes from tlsTrust.
        Communicator c = client(s, Options.builder()
                .tls(dir.resolve("client-a.key"), dir.resolve("client-a.pem"))
                .tlsTrust(dir.resolve("ca.pem")));
        roundTrip(s, c);
        assertEquals(CLIENT_A, s.peerIdentity(c.id()));
        assertEquals(SERVER, c.peerIdentity(c.serverId().orElseThrow()));
        NqException stranger = assertThrows(NqException.class,
                () -> s.peerIdentity(UUID.randomUUID()));
        assertEquals(NqError.NO_PEER, stranger.error());
    }

    @Test
    void requiredClientCertificateRefusesAClientWithoutOne(@TempDir Path dir) throws Exception {
        authority(dir);
        Communicator s = requiringServer(dir);
        // The client's form of old: a lone certificate is what it trusts.
        Communicator c = client(s, Options.builder().tls(null, dir.resolve("ca.pem")));
        assertEquals(NqError.AUTH, assertThrows(NqException.class, () -> c.get(WAIT)).error());
        assertEquals(NqError.AUTH, assertThrows(NqException.class, c::close).error());
        assertEquals(List.of(), s.peers());
    }

    @Test
    void clientCertificatesFromPemTextAndADirectory(@TempDir Path dir) throws Exception {
        authority(dir);
        Communicator s = server(Options.builder()
                .tlsIdentityPem(Files.readString(dir.resolve("server.key")),
                        Files.readString(dir.resolve("server.pem")))
                .tlsTrustDirectory(dir.resolve("anchors"))
                .clientAuth(ClientAuth.REQUIRED)
                .tlsMinVersion(TlsVersion.TLS_1_3));
        Communicator c = client(s, Options.builder()
                .tlsIdentityPem(Files.readString(dir.resolve("client-a.key")),
                        Files.readString(dir.resolve("client-a.pem")))
                .tlsTrustPem(Files.readString(dir.resolve("ca.pem")))
                .tlsMinVersion(TlsVersion.TLS_1_3));
        roundTrip(s, c);
        assertEquals(CLIENT_A, s.peerIdentity(c.id()));
    }

    @Test
    void plainPeersHaveAnEmptyIdentity() throws Exception {
        Communicator s = server();
        Communicator c = client(s);
        roundTrip(s, c);
        assertEquals("", s.peerIdentity(c.id()));
        assertEquals(NqError.AUTH, NqError.of(org.libnq.internal.nqraw.NQ_EAUTH));
    }
}
