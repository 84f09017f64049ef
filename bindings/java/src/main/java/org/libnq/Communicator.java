package org.libnq;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import org.libnq.internal.Comm;
import org.libnq.internal.Completion;
import org.libnq.internal.Completions;
import org.libnq.internal.Event;
import org.libnq.internal.Events;
import org.libnq.internal.Msg;
import org.libnq.internal.Opts;
import org.libnq.internal.Text;
import org.libnq.internal.nqraw;

/**
 * A network queue: a server (many clients) or a client (one server). {@code put} returns a
 * {@link CompletableFuture}, {@code get} blocks until a message arrives. The wire protocol is
 * net-queue's, so peers may be libnq programs in any language or net-queue itself.
 *
 * <p>All methods are thread-safe. Close the communicator when done: close flushes queued puts
 * and runs the close handshake; its native memory is freed once it is closed and unreachable.
 * Futures complete on one thread per communicator, so their dependent actions should not block.
 */
public final class Communicator implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** A blocking get waits in slices this long, so that it sees interrupts. */
    private static final long GET_SLICE_MS = 100;

    private final Comm raw;
    private final Completions done;
    private final UUID id;
    private final Map<Long, Pending> pending = new ConcurrentHashMap<>();
    private final AtomicLong tokens = new AtomicLong();
    private final Thread resolver;
    private final Events events;
    private final Thread dispatcher;
    private final Object closeLock = new Object();
    private boolean closed;

    /**
     * A put in flight: its future, and the buffer libnq reads in place (if any), held until libnq
     * reports the put, even when the future was cancelled before (the copies of a put to several
     * peers that had started are still read).
     */
    private record Pending(PutFuture future, ByteBuffer keepAlive) {
    }

    /**
     * The future of one put, whose {@link #cancel(boolean)} withdraws the put through libnq (see
     * {@link Communicator#put(byte[], UUID...)}). It holds the communicator, so that the native
     * communicator outlives every cancel.
     */
    private static final class PutFuture extends CompletableFuture<Void> {
        private final Communicator owner;
        private final long token;

        PutFuture(Communicator owner, long token) {
            this.owner = owner;
            this.token = token;
        }

        @Override
        public boolean cancel(boolean mayInterruptIfRunning) {
            if (!isDone() && owner.withdraw(token) > 0) {
                return super.cancel(mayInterruptIfRunning);
            }
            return isCancelled();
        }

        /** libnq reported the put withdrawn: cancelled, if cancel has not done it already. */
        void withdrawn() {
            super.cancel(false);
        }
    }

    /** Frees the native objects; holds no reference to the communicator. */
    private record Release(Comm raw, Completions done, Events events) implements Runnable {
        @Override
        public void run() {
            raw.delete();
            done.delete();
            if (events != null) {
                events.delete();
            }
        }
    }

    private Communicator(Comm raw, Events events, PeerListener listener) {
        this.raw = raw;
        this.done = new Completions();
        this.events = events;
        this.id = Ids.fromBytes(raw.id());
        // The resolver thread references this communicator until close, so the cleaner only
        // ever frees a closed one.
        CLEANER.register(this, new Release(raw, done, events));
        this.resolver = new Thread(this::resolve, "nq-futures-" + id);
        this.resolver.setDaemon(true);
        this.resolver.start();
        if (events != null) {
            this.dispatcher = new Thread(() -> dispatch(events, listener), "nq-events-" + id);
            this.dispatcher.setDaemon(true);
            this.dispatcher.start();
        } else {
            this.dispatcher = null;
        }
    }

    /** Hands every peer event to the listener, in order, until close. */
    private static void dispatch(Events events, PeerListener listener) {
        Event event = new Event();
        try {
            while (events.next(-1, event) != nqraw.NQ_ECLOSED) {
                UUID peer = Ids.fromBytes(event.peer());
                try {
                    if (event.kind() == nqraw.NQ_EVENT_CONNECTED) {
                        listener.connected(peer);
                    } else if (event.kind() == nqraw.NQ_EVENT_DISCONNECTED) {
                        int reason = event.reason();
                        listener.disconnected(peer, reason == nqraw.NQ_OK ? null : NqError.of(reason));
                    } else if (event.kind() == nqraw.NQ_EVENT_RECONNECTING) {
                        int reason = event.reason();
                        UUID server = peer.getMostSignificantBits() == 0
                                && peer.getLeastSignificantBits() == 0 ? null : peer;
                        listener.reconnecting(server, reason == nqraw.NQ_OK ? null : NqError.of(reason));
                    }
                } catch (RuntimeException e) {
                    // One listener call's trouble must not stop the events behind it.
                    Thread t = Thread.currentThread();
                    t.getUncaughtExceptionHandler().uncaughtException(t, e);
                }
            }
        } finally {
            event.delete();
        }
    }

    /**
     * Opens a communicator. Never blocks on the network (except MQTT, which waits for its
     * broker): a server binds before this returns, a client connects in the background and
     * reports a failure through its futures and {@code get}.
     *
     * @param protocol the transport: TCP (with or without TLS), MQTT or gRPC
     * @param purpose server or client
     * @param options the options, from {@link Options#builder()}
     * @return the open communicator, which the caller closes
     * @throws NqException for invalid options, an address in use, an unsupported protocol, ...
     */
    public static Communicator open(Protocol protocol, Purpose purpose, Options options)
            throws NqException {
        Options o = options == null ? Options.defaults() : options;
        Opts opts = o.toRaw(purpose);
        Comm raw = new Comm();
        Events events = o.peerListener() != null ? new Events() : null;
        try {
            if (events != null) {
                NqException.check(opts.set_events(events));
            }
            NqException.check(raw.open(protocol.code, purpose.code, opts));
        } catch (NqException e) {
            raw.delete();
            if (events != null) {
                events.delete();
            }
            throw e;
        } finally {
            opts.delete();
        }
        return new Communicator(raw, events, o.peerListener());
    }

    private void resolve() {
        Completion completion = new Completion();
        try {
            while (done.next(-1, completion) != nqraw.NQ_ECLOSED) {
                Pending p = pending.remove(completion.getToken());
                if (p == null) {
                    continue;
                }
                int result = completion.getResult();
                if (result == nqraw.NQ_OK) {
                    p.future().complete(null);
                } else if (result == nqraw.NQ_ECANCELED) {
                    p.future().withdrawn();
                } else {
                    p.future().completeExceptionally(new NqException(result));
                }
            }
        } finally {
            completion.delete();
        }
    }

    /**
     * This communicator's identity.
     *
     * @return this communicator's identity
     */
    public UUID id() {
        return id;
    }

    /**
     * Sends a copy of data to peers. A client sends to its server and takes no peers; a server
     * sends to the listed peers, or to every client when none are listed. The future completes
     * when every copy has been handed to the transport, or fails with an {@link NqException}
     * (closed, no such peer, connection lost, ...).
     *
     * <p>{@code cancel} on the returned future withdraws the put (since libnq 1.2): every copy not
     * yet started on the wire is taken out of its queue and never reaches its peer. When any was,
     * it returns true and the future completes at once with a {@link
     * java.util.concurrent.CancellationException}; for a put to several peers the copies that had
     * started still go out (and still read a direct buffer until they are done). Otherwise (every
     * copy had started, the put has completed, the communicator is closed) it returns false and
     * the put goes on. It waits briefly for libnq's I/O threads. Futures derived from it ({@code
     * thenApply}, ...) are plain futures: cancelling them does not reach libnq.
     *
     * @param data the message, copied
     * @param peers the peers to send to; none: the server (a client) or every client (a server)
     * @return a future that completes when the put has completed
     * @throws IllegalArgumentException when libnq refuses the arguments (a client given peers)
     */
    public CompletableFuture<Void> put(byte[] data, UUID... peers) {
        byte[] list = Ids.toBytes(peers);
        return send(null, (token) -> raw.put_copy(data, list, done, token));
    }

    /**
     * Sends the bytes of data between its position and limit to peers, like {@link
     * #put(byte[], UUID...)}. A direct buffer is sent in place, without a copy: do not modify
     * it until the future completes. A heap buffer is copied.
     *
     * @param data the message: a direct buffer is sent in place and must not change until the
     *     future completes, a heap buffer is copied
     * @param peers the peers to send to; none: the server (a client) or every client (a server)
     * @return a future that completes when the put has completed
     */
    public CompletableFuture<Void> put(ByteBuffer data, UUID... peers) {
        if (!data.isDirect()) {
            byte[] copy = new byte[data.remaining()];
            data.duplicate().get(copy);
            return put(copy, peers);
        }
        byte[] list = Ids.toBytes(peers);
        ByteBuffer view = data.slice();
        return send(view, (token) -> raw.put(view, list, done, token));
    }

    private interface Sender {
        int send(long token);
    }

    private CompletableFuture<Void> send(ByteBuffer keepAlive, Sender sender) {
        long token = tokens.incrementAndGet();
        PutFuture future = new PutFuture(this, token);
        pending.put(token, new Pending(future, keepAlive));
        int rc;
        try {
            rc = sender.send(token);
        } finally {
            Reference.reachabilityFence(this);
        }
        if (rc != nqraw.NQ_OK) {
            pending.remove(token);
            if (rc == nqraw.NQ_EINVAL) {
                throw new IllegalArgumentException(nqraw.nq_strerror(rc));
            }
            future.completeExceptionally(new NqException(rc));
        }
        return future;
    }

    /**
     * Asks libnq to withdraw the put under token: how many copies it withdrew, 0 when nothing
     * changed, or a negative NQ_* code.
     */
    private long withdraw(long token) {
        try {
            return raw.cancel(done, token);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Takes the next message, in arrival order, waiting as long as it takes. After {@link
     * #close()}, queued messages are still returned, then {@link NqError#CLOSED} is thrown; a
     * client whose connection failed gets why (connection refused or reset, TLS, ...).
     *
     * @return the next message
     * @throws InterruptedException when the thread is interrupted while waiting
     * @throws NqException {@link NqError#CLOSED} once closed and drained, or why the connection
     *     failed
     */
    public Message get() throws NqException, InterruptedException {
        try {
            return take(-1);
        } catch (TimeoutException e) {
            throw new AssertionError("a wait without a deadline timed out", e);
        }
    }

    /**
     * Takes the next message, waiting up to timeout; see {@link #get()}.
     *
     * @param timeout how long to wait
     * @return the next message
     * @throws TimeoutException when no message arrived in time
     * @throws InterruptedException when the thread is interrupted while waiting
     * @throws NqException {@link NqError#CLOSED} once closed and drained, or why the connection
     *     failed
     */
    public Message get(Duration timeout)
            throws NqException, InterruptedException, TimeoutException {
        return take(Math.max(0, timeout.toNanos()));
    }

    /**
     * Takes the next message from one of the given peers, waiting up to timeout (since libnq 1.2);
     * the other peers' messages stay queued in their order. See {@link #get()}.
     *
     * @param timeout how long to wait
     * @param peers the peers whose messages are wanted
     * @return the next message from one of the peers
     * @throws TimeoutException when no such message arrived in time
     * @throws InterruptedException when the thread is interrupted while waiting
     * @throws NqException {@link NqError#CLOSED} once closed and drained, or why the connection
     *     failed
     */
    public Message getFrom(Duration timeout, UUID... peers)
            throws NqException, InterruptedException, TimeoutException {
        if (peers.length == 0) {
            throw new IllegalArgumentException("getFrom takes at least one peer");
        }
        return take(Math.max(0, timeout.toNanos()), Ids.toBytes(peers));
    }

    /**
     * The next message, as a future (since libnq 1.2): requests are served in order by one thread
     * of this communicator, started at the first call, whatever their number. Cancelling the
     * future before a message was taken for it leaves the message for the next request; after
     * close the future fails with the closing error.
     *
     * @return a future of the next message
     */
    public CompletableFuture<Message> getAsync() {
        CompletableFuture<Message> f = new CompletableFuture<>();
        synchronized (asyncGets) {
            asyncGets.add(f);
            if (asyncTaker == null) {
                asyncTaker = new Thread(this::serveAsyncGets, "nq-get-async");
                asyncTaker.setDaemon(true);
                asyncTaker.start();
            }
        }
        return f;
    }

    private final ArrayDeque<CompletableFuture<Message>> asyncGets = new ArrayDeque<>();
    private Thread asyncTaker;
    /** A message taken for an async get that was cancelled meanwhile; the oldest there is. */
    private Message leftover;

    private void serveAsyncGets() {
        while (true) {
            CompletableFuture<Message> f;
            synchronized (asyncGets) {
                f = asyncGets.peek();
                if (f == null) {
                    asyncTaker = null;
                    return;
                }
            }
            Message m = null;
            Throwable failure = null;
            while (m == null && failure == null && !f.isDone()) {
                try {
                    m = take(TimeUnit.MILLISECONDS.toNanos(GET_SLICE_MS));
                } catch (TimeoutException e) {
                    // look again: the request may have been cancelled
                } catch (NqException | InterruptedException e) {
                    failure = e;
                }
            }
            synchronized (asyncGets) {
                asyncGets.poll();
            }
            if (m != null && !f.complete(m)) {
                // Cancelled while this message was taken: the next get has it.
                synchronized (asyncGets) {
                    leftover = m;
                }
            } else if (failure != null) {
                f.completeExceptionally(failure);
                if (failure instanceof NqException) {
                    synchronized (asyncGets) {
                        for (CompletableFuture<Message> rest; (rest = asyncGets.poll()) != null; ) {
                            rest.completeExceptionally(failure);
                        }
                    }
                }
            }
        }
    }

    private Message take(long timeoutNanos)
            throws NqException, InterruptedException, TimeoutException {
        return take(timeoutNanos, null);
    }

    private Message take(long timeoutNanos, byte[] peers)
            throws NqException, InterruptedException, TimeoutException {
        synchronized (asyncGets) {
            if (leftover != null
                    && (peers == null || Ids.contains(peers, leftover.peer()))) {
                Message m = leftover;
                leftover = null;
                return m;
            }
        }
        long deadline = System.nanoTime() + timeoutNanos;
        Msg msg = new Msg();
        try {
            while (true) {
                if (Thread.interrupted()) {
                    throw new InterruptedException();
                }
                long wait = GET_SLICE_MS;
                if (timeoutNanos >= 0) {
                    long left = deadline - System.nanoTime();
                    wait = Math.min(wait, Math.max(0, (left + 999_999) / 1_000_000));
                }
                int rc = peers == null ? raw.get(wait, msg) : raw.get_from(peers, wait, msg);
                if (rc == nqraw.NQ_OK) {
                    return new Message(Ids.fromBytes(msg.peer()), msg.data());
                }
                if (rc != nqraw.NQ_ETIMEDOUT) {
                    throw new NqException(rc);
                }
                if (timeoutNanos >= 0 && deadline - System.nanoTime() <= 0) {
                    throw new TimeoutException("no message within the timeout");
                }
            }
        } finally {
            msg.delete();
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Closes the communicator, blocking until it is done: queued puts are flushed, the close
     * handshake runs (a server waits for its clients) and every future has completed. Later
     * calls return at once.
     *
     * @throws NqException when the connection did not end cleanly (the first call only)
     */
    @Override
    public void close() throws NqException {
        int rc = nqraw.NQ_OK;
        synchronized (closeLock) {
            if (!closed) {
                closed = true;
                try {
                    rc = raw.close();
                    done.shutdown();
                    if (events != null) {
                        events.shutdown();
                    }
                } finally {
                    Reference.reachabilityFence(this);
                }
            }
        }
        join(resolver);
        join(dispatcher);
        NqException.check(rc);
    }

    /** Waits for one of this communicator's threads, unless it is the caller. */
    private static void join(Thread thread) {
        if (thread == null || Thread.currentThread() == thread) {
            return;
        }
        boolean interrupted = false;
        while (thread.isAlive()) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * A server's listening port (useful with port 0); a client's source port.
     *
     * @return the port
     * @throws NqException when the communicator is closed
     */
    public int localPort() throws NqException {
        try {
            return NqException.check(raw.local_port());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * A client's server identity, once its handshake has arrived.
     *
     * @return the server's identity, or empty before its handshake has arrived
     */
    public Optional<UUID> serverId() {
        try {
            UUID server = Ids.fromBytes(raw.server_id());
            return server.getMostSignificantBits() == 0 && server.getLeastSignificantBits() == 0
                    ? Optional.empty()
                    : Optional.of(server);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * What a connected peer presented to authenticate itself over TLS (since libnq 1.3): the
     * subject of its certificate in RFC 2253 form, then one line per subject alternative name,
     * as in {@code "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1"}; empty when it presented
     * none (plain TCP, or a client not asked for one). A client asks about its server ({@link
     * #serverId()}).
     *
     * @param peer a connected peer
     * @return the peer's certificate subject and alternative names, or an empty string
     * @throws NqException {@link NqError#NO_PEER} when peer is not connected now
     */
    public String peerIdentity(UUID peer) throws NqException {
        Text text = new Text();
        try {
            NqException.check(raw.peer_identity(Ids.toBytes(peer), text));
            return new String(text.bytes(), StandardCharsets.UTF_8);
        } finally {
            text.delete();
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The connected peers: a server's clients, a client's server.
     *
     * @return the identities of the connected peers
     * @throws NqException when the communicator is closed
     */
    public List<UUID> peers() throws NqException {
        org.libnq.internal.Ids ids = new org.libnq.internal.Ids();
        try {
            NqException.check(raw.peers(ids));
            List<UUID> out = new ArrayList<>();
            for (long i = 0; i < ids.size(); i++) {
                out.add(Ids.fromBytes(ids.at(i)));
            }
            return out;
        } finally {
            ids.delete();
            Reference.reachabilityFence(this);
        }
    }

    @Override
    public String toString() {
        return "Communicator(" + id + ")";
    }
}
