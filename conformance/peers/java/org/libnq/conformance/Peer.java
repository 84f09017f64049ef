package org.libnq.conformance;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.libnq.ClientAuth;
import org.libnq.Communicator;
import org.libnq.Message;
import org.libnq.NqException;
import org.libnq.Options;
import org.libnq.Protocol;
import org.libnq.Purpose;

/**
 * The Java conformance peer: runs one role of a case from the case book on the Java binding and
 * reports what it observes as JSON lines (conformance/README.md).
 *
 * <pre>
 * Peer --role server|client --protocol tcp|tls|mqtt|grpc --port P --case NAME [--host H]
 *      [--id UUID] [--key F] [--cert F] [--ca F] [--client-auth optional|required]
 *      [--token T] [--accept-token T --token-identity NAME] [--part LABEL] [--clients N]
 *      [--timeout S] [--cases-file F]
 * Peer --stdin [--cases-file F]
 * </pre>
 *
 * With --stdin every line of standard input is one run: a JSON object with the options' names as
 * keys plus "run", echoed in every line of that run. Runs go on in parallel, one thread each; the
 * program ends once standard input has ended and every run is done.
 */
public final class Peer {
    /** As in casebook.py: items listed per sender, bytes shown per item. */
    private static final int ITEMS_MAX = 16;
    private static final int ITEM_PREFIX = 8;
    private static final String[] OPS = {
        "put", "expect", "echo", "close", "drain", "sleep", "reopen", "identity"
    };
    private static final String[] ERRORS = {
        "ok", "invalid", "no_memory", "timeout", "closed", "connection_reset", "no_peer", "tls",
        "protocol", "refused", "address", "address_in_use", "not_supported", "system", "full",
        "serialize", "pending", "replaced", "canceled", "auth"
    };
    private static final HexFormat HEX = HexFormat.of();

    private final PrintStream out;

    private Peer(PrintStream out) {
        this.out = out;
    }

    private void write(Map<String, Object> line) {
        String text = Json.write(line);
        synchronized (out) {
            out.println(text);
            out.flush();
        }
    }

    static Map<String, Object> line(Object... pairs) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < pairs.length; i += 2) {
            m.put((String) pairs[i], pairs[i + 1]);
        }
        return m;
    }

    static String errorName(Throwable t) {
        if (t instanceof ExecutionException && t.getCause() != null) {
            t = t.getCause();
        }
        if (t instanceof NqException e) {
            int code = -e.code();
            return code >= 0 && code < ERRORS.length ? ERRORS[code] : "error" + e.code();
        }
        if (t instanceof TimeoutException) {
            return "timeout";
        }
        if (t instanceof IllegalArgumentException) {
            return "invalid";
        }
        return "other:" + t.getClass().getSimpleName();
    }

    static Map<String, Object> result(Map<String, Object> line, Throwable failure) {
        line.put("result", failure == null ? "ok" : errorName(failure));
        if (failure != null) {
            Throwable shown = failure instanceof ExecutionException && failure.getCause() != null
                    ? failure.getCause() : failure;
            line.put("detail", String.valueOf(shown.getMessage()));
        }
        return line;
    }

    static int number(Object v, int fallback) {
        return v instanceof Double d ? d.intValue() : fallback;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object v) {
        return v instanceof Map ? (Map<String, Object>) v : Map.of();
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object v) {
        return v instanceof List ? (List<Object>) v : List.of();
    }

    /** Received messages grouped by sender, in order of each sender's first message. */
    static final class Tally {
        private final Map<UUID, MessageDigest> digests = new LinkedHashMap<>();
        private final Map<UUID, List<Object>> items = new LinkedHashMap<>();
        private final Map<UUID, Integer> counts = new LinkedHashMap<>();
        private int total;

        void add(UUID peer, byte[] data) {
            MessageDigest md = digests.computeIfAbsent(peer, p -> {
                try {
                    return MessageDigest.getInstance("SHA-256");
                } catch (NoSuchAlgorithmException e) {
                    throw new IllegalStateException(e);
                }
            });
            md.update(ByteBuffer.allocate(8).putLong(data.length).array());
            md.update(data);
            List<Object> list = items.computeIfAbsent(peer, p -> new ArrayList<>());
            if (list.size() < ITEMS_MAX) {
                int n = Math.min(data.length, ITEM_PREFIX);
                list.add(List.of(data.length, HEX.formatHex(data, 0, n)));
            }
            counts.merge(peer, 1, Integer::sum);
            total++;
        }

        Map<String, Object> write(Map<String, Object> line) {
            List<Object> from = new ArrayList<>();
            for (UUID peer : digests.keySet()) {
                from.add(line("peer", peer.toString(), "count", counts.get(peer),
                        "digest", HEX.formatHex(digests.get(peer).digest()), "items", items.get(peer)));
            }
            line.put("count", total);
            line.put("from", from);
            return line;
        }
    }

    /** One role of one case, run step by step. */
    final class Run {
        private final Map<String, Object> spec;
        private final String runId;
        private final String role;
        private final String protocol;
        private final UUID id;
        private final Duration timeout;
        private final long deadline;
        private final List<UUID> senders = new ArrayList<>();
        private List<Message> last = new ArrayList<>();
        private Communicator comm;
        private boolean closed;

        Run(Map<String, Object> spec, Map<String, Object> book) {
            this.spec = spec;
            this.runId = String.valueOf(spec.getOrDefault("run", ""));
            this.role = String.valueOf(spec.getOrDefault("role", ""));
            this.protocol = String.valueOf(spec.getOrDefault("protocol", "tcp"));
            Object given = spec.get("id");
            this.id = given instanceof String s && !s.isEmpty() ? UUID.fromString(s) : UUID.randomUUID();
            int seconds = number(spec.get("timeout"), 0);
            this.timeout = Duration.ofSeconds(seconds > 0 ? seconds : number(book.get("timeout"), 60));
            this.deadline = System.nanoTime() + timeout.toNanos();
        }

        private void emit(Map<String, Object> line) {
            Map<String, Object> full = line("run", runId);
            full.putAll(line);
            write(full);
        }

        private Duration remaining() {
            return Duration.ofNanos(Math.max(0, deadline - System.nanoTime()));
        }

        private boolean open(Object step, boolean listening) {
            Protocol kind = switch (protocol) {
                case "mqtt" -> Protocol.MQTT;
                case "grpc" -> Protocol.GRPC;
                default -> Protocol.TCP;
            };
            boolean server = role.equals("server");
            String host = String.valueOf(spec.getOrDefault("host", "127.0.0.1"));
            int port = number(spec.get("port"), 0);
            Options.Builder options = Options.builder().id(id).address(host, port).closeTimeout(timeout);
            Object key = spec.get("key");
            Object cert = spec.get("cert");
            if (spec.get("ca") instanceof String ca) {
                // With anchors, a client's key and certificate are its own.
                options.tlsTrust(Path.of(ca));
                if (key instanceof String k && cert instanceof String c) {
                    if (server) {
                        options.tls(Path.of(k), Path.of(c));
                    } else {
                        options.tlsIdentity(Path.of(k), Path.of(c));
                    }
                }
            } else if (cert instanceof String c) {
                options.tls(server && key instanceof String k ? Path.of(k) : null, Path.of(c));
            }
            if (spec.get("client_auth") instanceof String auth) {
                options.clientAuth(ClientAuth.valueOf(auth.toUpperCase(Locale.ROOT)));
            }
            if (spec.get("token") instanceof String token) {
                options.token(token);
            }
            if (spec.get("accept_token") instanceof String token) {
                options.acceptToken(token, String.valueOf(spec.getOrDefault("token_identity", "")));
            }
            try {
                comm = Communicator.open(kind, server ? Purpose.SERVER : Purpose.CLIENT, options.build());
            } catch (NqException e) {
                comm = null;
                emit(result(line("step", step, "op", "open"), e));
                return false;
            }
            closed = false;
            emit(result(line("step", step, "op", "open"), null));
            if (listening) {
                int bound = port;
                if (kind != Protocol.MQTT) {
                    try {
                        bound = comm.localPort();
                    } catch (NqException e) {
                        bound = -1;
                    }
                }
                emit(line("event", "listening", "port", bound));
            }
            return true;
        }

        private byte[] payload(Map<String, Object> spec, UUID to) {
            if (spec.get("text") instanceof String text) {
                text = text.replace("{self}", id.toString()).replace("{to}", to == null ? "" : to.toString());
                return text.getBytes(StandardCharsets.UTF_8);
            }
            if (spec.get("hex") instanceof String hex) {
                return HEX.parseHex(hex);
            }
            if (spec.get("size") instanceof Double size) {
                byte[] out = new byte[size.intValue()];
                for (int i = 0; i < out.length; i++) {
                    out[i] = (byte) (i % 251);
                }
                return out;
            }
            if (Boolean.TRUE.equals(spec.get("own_id"))) {
                return ByteBuffer.allocate(16).putLong(id.getMostSignificantBits())
                        .putLong(id.getLeastSignificantBits()).array();
            }
            throw new IllegalArgumentException("unknown payload spec " + spec);
        }

        private Throwable await(CompletableFuture<Void> future) {
            try {
                future.get(remaining().toNanos(), TimeUnit.NANOSECONDS);
                return null;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return e;
            } catch (ExecutionException | TimeoutException e) {
                return e;
            }
        }

        private Map<String, Object> put(Map<String, Object> step) {
            String to = String.valueOf(step.getOrDefault("to", "default"));
            String wait = String.valueOf(step.getOrDefault("wait", "each"));
            boolean indexed = step.containsKey("repeat");
            int rounds = number(step.get("repeat"), 1);
            List<UUID[]> peers = new ArrayList<>();
            List<UUID> receivers = new ArrayList<>();
            switch (to) {
                case "each" -> {
                    for (UUID s : senders) {
                        peers.add(new UUID[] {s});
                        receivers.add(s);
                    }
                }
                case "senders" -> {
                    peers.add(senders.toArray(new UUID[0]));
                    receivers.add(null);
                }
                case "unknown" -> {
                    peers.add(new UUID[] {UUID.randomUUID()});
                    receivers.add(null);
                }
                default -> {
                    peers.add(new UUID[0]);
                    receivers.add(null);
                }
            }
            // The payload, then those under "then", one after the other.
            List<Object> specs = new ArrayList<>();
            specs.add(step.get("put"));
            specs.addAll(list(step.get("then")));
            List<List<byte[]>> rows = new ArrayList<>();
            for (Object spec : specs) {
                List<byte[]> bases = new ArrayList<>();
                for (UUID receiver : receivers) {
                    bases.add(payload(map(spec), receiver));
                }
                rows.add(bases);
            }
            Throwable first = null;
            List<CompletableFuture<Void>> pending = new ArrayList<>();
            int count = 0;
            for (List<byte[]> bases : rows) {
                for (int k = 0; k < rounds; k++) {
                    for (int t = 0; t < peers.size(); t++) {
                        byte[] msg = bases.get(t);
                        if (indexed) {
                            msg = ByteBuffer.allocate(8 + msg.length).putLong(k).put(msg).array();
                        }
                        count++;
                        CompletableFuture<Void> future;
                        try {
                            future = comm.put(msg, peers.get(t));
                        } catch (IllegalArgumentException e) {
                            first = first == null ? e : first;
                            continue;
                        }
                        if (wait.equals("each")) {
                            Throwable failure = await(future);
                            first = first == null ? failure : first;
                        } else if (wait.equals("end")) {
                            pending.add(future);
                        } else if (future.isCompletedExceptionally()) {
                            first = first == null ? await(future) : first;
                        }
                    }
                }
            }
            for (CompletableFuture<Void> future : pending) {
                Throwable failure = await(future);
                first = first == null ? failure : first;
            }
            return result(line("count", count), first);
        }

        private Throwable take(Tally tally) {
            Message m;
            try {
                m = comm.get(remaining());
            } catch (NqException | TimeoutException e) {
                return e;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return e;
            }
            tally.add(m.peer(), m.data());
            last.add(m);
            if (!senders.contains(m.peer())) {
                senders.add(m.peer());
            }
            return null;
        }

        private Map<String, Object> expect(Map<String, Object> step) {
            Object e = step.get("expect");
            int wanted = e instanceof Map
                    ? number(map(e).get("per_client"), 1) * number(spec.get("clients"), 1)
                    : number(e, 0);
            Tally tally = new Tally();
            last = new ArrayList<>();
            Throwable failure = null;
            for (int i = 0; i < wanted && failure == null; i++) {
                failure = take(tally);
            }
            return tally.write(result(line(), failure));
        }

        private Map<String, Object> echo() {
            Throwable first = null;
            for (Message m : last) {
                Throwable failure = await(comm.put(m.data(), m.peer()));
                first = first == null ? failure : first;
            }
            return result(line("count", last.size()), first);
        }

        private Map<String, Object> close() {
            long start = System.nanoTime();
            Throwable failure = null;
            try {
                comm.close();
            } catch (NqException e) {
                failure = e;
            }
            closed = true;
            return result(line("ms", (System.nanoTime() - start) / 1_000_000), failure);
        }

        private Map<String, Object> drain() {
            Tally tally = new Tally();
            last = new ArrayList<>();
            Throwable end;
            do {
                end = take(tally);
            } while (end == null);
            return tally.write(line("result", "ok", "end", errorName(end), "detail", String.valueOf(end.getMessage())));
        }

        /** What authenticated each known sender, in order; the first failure is the result. */
        private Map<String, Object> identity() {
            Throwable first = null;
            List<Object> peers = new ArrayList<>();
            for (UUID peer : senders) {
                String identity = "";
                try {
                    identity = comm.peerIdentity(peer);
                } catch (NqException e) {
                    first = first == null ? e : first;
                }
                peers.add(line("peer", peer.toString(), "identity", identity));
            }
            return result(line("peers", peers), first);
        }

        private Map<String, Object> reopen() {
            String closing = "ok";
            if (!closed) {
                try {
                    comm.close();
                } catch (NqException e) {
                    closing = errorName(e);
                }
            }
            comm = null;
            closed = true;
            boolean opened = open(null, false);
            return line("result", opened ? "ok" : "failed", "close", closing);
        }

        void execute(Map<String, Object> book) {
            try {
                List<Object> steps = steps(book);
                if (steps == null) {
                    return;
                }
                if (!open(-1, role.equals("server"))) {
                    return;
                }
                int index = 0;
                for (Object s : steps) {
                    Map<String, Object> step = map(s);
                    String op = null;
                    for (String candidate : OPS) {
                        if (step.containsKey(candidate)) {
                            op = candidate;
                            break;
                        }
                    }
                    if (op == null || comm == null) {
                        emit(line("event", "error", "detail",
                                op == null ? "a step holds no known operation" : "no communicator (a reopen failed)"));
                        return;
                    }
                    Map<String, Object> observed = switch (op) {
                        case "put" -> put(step);
                        case "expect" -> expect(step);
                        case "echo" -> echo();
                        case "close" -> close();
                        case "drain" -> drain();
                        case "sleep" -> {
                            Thread.sleep(number(step.get("sleep"), 0));
                            yield line("result", "ok");
                        }
                        case "identity" -> identity();
                        default -> reopen();
                    };
                    Map<String, Object> full = line("step", index, "op", op);
                    full.putAll(observed);
                    emit(full);
                    index++;
                }
                if (comm != null && !closed) {
                    Map<String, Object> full = line("step", index, "op", "close", "implicit", true);
                    full.putAll(close());
                    emit(full);
                }
            } catch (RuntimeException | InterruptedException e) {
                emit(line("event", "error", "detail", e.toString()));
            } finally {
                // A closed communicator is freed when it is collected; collecting at the end
                // of each run frees it before the next run, as a fresh process would start
                // (paho.mqtt.c connects slowly while another client exists).
                comm = null;
                System.gc();
                emit(line("event", "done"));
            }
        }

        private List<Object> steps(Map<String, Object> book) {
            String name = String.valueOf(spec.get("case"));
            Object part = spec.get("part");
            for (Object c : list(book.get("cases"))) {
                Map<String, Object> kase = map(c);
                if (!name.equals(kase.get("name"))) {
                    continue;
                }
                if (role.equals("server")) {
                    return list(kase.get("server"));
                }
                if (!role.equals("client")) {
                    break;
                }
                for (Object g : list(kase.get("clients"))) {
                    Map<String, Object> group = map(g);
                    String label = String.valueOf(group.getOrDefault("label", "client"));
                    if (!(part instanceof String p) || p.isEmpty() || p.equals(label)) {
                        return list(group.get("steps"));
                    }
                }
            }
            emit(line("event", "error", "detail", "no steps for role " + role + " in case " + name));
            return null;
        }
    }

    public static void main(String[] args) throws IOException, InterruptedException {
        Map<String, Object> spec = new LinkedHashMap<>();
        String casesFile = "cases.json";
        boolean fromStdin = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--stdin")) {
                fromStdin = true;
                continue;
            }
            if (i + 1 >= args.length || !a.startsWith("--")) {
                System.err.println("Peer: bad option " + a);
                System.exit(2);
            }
            String v = args[++i];
            switch (a) {
                case "--cases-file" -> casesFile = v;
                case "--port", "--clients", "--timeout" -> spec.put(a.substring(2), Double.valueOf(v));
                default -> spec.put(a.substring(2).replace('-', '_'), v);
            }
        }
        Map<String, Object> book = map(Json.parse(Files.readString(Path.of(casesFile))));
        Peer peer = new Peer(new PrintStream(System.out, false, StandardCharsets.UTF_8));
        if (!fromStdin) {
            spec.putIfAbsent("run", "");
            peer.new Run(spec, book).execute(book);
            return;
        }
        List<Thread> runs = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String text;
        while ((text = in.readLine()) != null) {
            if (text.isBlank()) {
                continue;
            }
            Map<String, Object> runSpec;
            try {
                runSpec = map(Json.parse(text));
            } catch (IllegalArgumentException e) {
                System.err.println("Peer: a run that is not JSON: " + e.getMessage());
                continue;
            }
            Run run = peer.new Run(runSpec, book);
            Thread thread = new Thread(() -> run.execute(book), "run-" + runSpec.get("run"));
            thread.setDaemon(true);
            thread.start();
            runs.add(thread);
            runs.removeIf(t -> !t.isAlive());
        }
        for (Thread thread : runs) {
            thread.join();
        }
        System.exit(0);
    }
}
