package org.libnq;

import java.nio.file.Path;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import org.libnq.internal.Opts;
import org.libnq.internal.nqraw;

/**
 * Options of {@link Communicator#open}, built with {@link #builder()}. Anything not set keeps
 * libnq's default (net-queue's, where net-queue has the setting): a random id, 127.0.0.1:51966,
 * no TLS.
 */
public final class Options {
    private final UUID id;
    private final String host;
    private final int port;
    private final boolean tls;
    private final Path key;
    private final Path certificate;
    private final String identityKey;
    private final String identityCertificate;
    private final boolean identityPem;
    private final Path trustFile;
    private final Path trustDirectory;
    private final String trustPem;
    private final Map<Integer, Long> ints;
    private final String mqttPrefix;
    private final PeerListener peerListener;
    private final String user;
    private final String password;
    private final String token;
    private final Map<String, String> acceptedTokens;
    private final String serverName;
    private final List<String> alpn;
    private final String mqttClientId;
    private final SecretSource secret;

    private Options(Builder b) {
        id = b.id;
        host = b.host;
        port = b.port;
        tls = b.tls;
        key = b.key;
        certificate = b.certificate;
        identityKey = b.identityKey;
        identityCertificate = b.identityCertificate;
        identityPem = b.identityPem;
        trustFile = b.trustFile;
        trustDirectory = b.trustDirectory;
        trustPem = b.trustPem;
        ints = Map.copyOf(b.ints);
        mqttPrefix = b.mqttPrefix;
        peerListener = b.peerListener;
        user = b.user;
        password = b.password;
        token = b.token;
        acceptedTokens = Map.copyOf(b.acceptedTokens);
        serverName = b.serverName;
        alpn = b.alpn;
        mqttClientId = b.mqttClientId;
        secret = b.secret;
    }

    /** The listener for peer events, or null. */
    PeerListener peerListener() {
        return peerListener;
    }

    /**
     * A builder holding the defaults.
     *
     * @return a new builder
     */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * The defaults.
     *
     * @return options holding every default
     */
    public static Options defaults() {
        return builder().build();
    }

    /** libnq options for these, for a communicator in role purpose (the caller deletes them). */
    Opts toRaw(Purpose purpose) throws NqException {
        Opts o = new Opts();
        try {
            NqException.check(o.status());
            if (id != null) {
                NqException.check(o.set_id(Ids.toBytes(id)));
            }
            if (host != null) {
                NqException.check(o.set_netloc(host, port));
            }
            if (tls && key != null && purpose == Purpose.CLIENT) {
                NqException.check(o.set_tls_identity(key.toString(), text(certificate), false));
            } else if (tls) {
                NqException.check(o.set_tls(text(key), text(certificate)));
            }
            if (identityKey != null) {
                NqException.check(
                        o.set_tls_identity(identityKey, identityCertificate, identityPem));
            }
            if (trustFile != null || trustDirectory != null || trustPem != null) {
                NqException.check(o.set_tls_trust(text(trustFile), text(trustDirectory), trustPem));
            }
            for (Map.Entry<Integer, Long> e : ints.entrySet()) {
                NqException.check(o.set_int(e.getKey(), e.getValue()));
            }
            if (mqttPrefix != null) {
                NqException.check(o.set_mqtt_prefix(mqttPrefix));
            }
            setCredentials(o);
            return o;
        } catch (NqException | RuntimeException e) {
            o.delete();
            throw e;
        }
    }

    /** Sets the logins, tokens and names (since libnq 1.4) in o. */
    private void setCredentials(Opts o) throws NqException {
        if (user != null) {
            NqException.check(o.set_login(user, password));
        }
        if (token != null) {
            NqException.check(o.set_token(token));
        }
        for (Map.Entry<String, String> e : acceptedTokens.entrySet()) {
            NqException.check(o.accept_token(e.getKey(), e.getValue()));
        }
        if (serverName != null) {
            NqException.check(o.set_tls_server_name(serverName));
        }
        if (alpn != null) {
            NqException.check(o.set_tls_alpn(String.join(",", alpn)));
        }
        if (mqttClientId != null) {
            NqException.check(o.set_mqtt_client_id(mqttClientId));
        }
        if (secret != null) {
            // libnq holds the adapter until every communicator opened with o is gone.
            NqException.check(o.set_secret(new Secrets(secret)));
        }
    }

    private static String text(Path path) {
        return path == null ? null : path.toString();
    }

    /** Builds {@link Options}; values are checked by libnq when the communicator opens. */
    public static final class Builder {
        private UUID id;
        private String host;
        private int port;
        private boolean tls;
        private Path key;
        private Path certificate;
        private String identityKey;
        private String identityCertificate;
        private boolean identityPem;
        private Path trustFile;
        private Path trustDirectory;
        private String trustPem;
        private final Map<Integer, Long> ints = new LinkedHashMap<>();
        private String mqttPrefix;
        private PeerListener peerListener;
        private String user;
        private String password;
        private String token;
        private final Map<String, String> acceptedTokens = new LinkedHashMap<>();
        private String serverName;
        private List<String> alpn;
        private String mqttClientId;
        private SecretSource secret;

        private Builder() {
        }

        /**
         * Tells listener of peers coming and going (since libnq 1.1).
         *
         * @param listener the listener, called in order on one thread of the communicator
         * @return this builder
         */
        public Builder peerListener(PeerListener listener) {
            this.peerListener = Objects.requireNonNull(listener);
            return this;
        }

        /**
         * This communicator's identity.
         *
         * @param id the identity
         * @return this builder
         */
        public Builder id(UUID id) {
            this.id = Objects.requireNonNull(id);
            return this;
        }

        /**
         * The address a server binds or a client connects to (for MQTT, the broker's). A server
         * given port 0 binds a free port: see {@link Communicator#localPort()}.
         *
         * @param host a host name, or an IPv4 or IPv6 address
         * @param port the port; a server given 0 binds a free one
         * @return this builder
         */
        public Builder address(String host, int port) {
            this.host = Objects.requireNonNull(host);
            this.port = port;
            return this;
        }

        /**
         * Turns TLS on. A server gives its PEM key and certificate chain; a client gives a null
         * key and the PEM certificates it trusts, or null to trust the system's store. A client
         * given a key (since libnq 1.3) presents it and its certificate chain as {@link
         * #tlsIdentity(Path, Path)} does, and trusts the anchors of {@code tlsTrust...} or the
         * system's store.
         *
         * @param key a server's PEM private key file; a client's own, or null
         * @param certificate the PEM certificate chain file that goes with the key, or for a client
         *     without a key the certificates it trusts (null: the system's store)
         * @return this builder
         */
        public Builder tls(Path key, Path certificate) {
            this.tls = true;
            this.key = key;
            this.certificate = certificate;
            return this;
        }

        /**
         * This communicator's own PEM key and certificate chain, read from files when it opens,
         * in either role (since libnq 1.3 over TCP, 1.4 over MQTT and gRPC; a transport that
         * cannot use it refuses it with {@link NqError#NOT_SUPPORTED}): a server's, or a
         * client's, presented when its server asks ({@link #clientAuth(ClientAuth)}). Turns TLS
         * on.
         *
         * @param key the PEM private key file
         * @param certificate the PEM certificate chain file
         * @return this builder
         */
        public Builder tlsIdentity(Path key, Path certificate) {
            return identity(key.toString(), certificate.toString(), false);
        }

        /**
         * As {@link #tlsIdentity(Path, Path)}, with the key and chain given as PEM text (a secret
         * from the environment, never written to disk).
         *
         * @param key the PEM private key
         * @param certificate the PEM certificate chain
         * @return this builder
         */
        public Builder tlsIdentityPem(String key, String certificate) {
            return identity(key, certificate, true);
        }

        private Builder identity(String key, String certificate, boolean pem) {
            this.identityKey = Objects.requireNonNull(key);
            this.identityCertificate = Objects.requireNonNull(certificate);
            this.identityPem = pem;
            return this;
        }

        /**
         * Trust anchors from a PEM file (since libnq 1.3, TCP): a client checks its server
         * against them (instead of {@link #tls(Path, Path)}'s certificates or the system's
         * store), a server its clients' certificates ({@link #clientAuth(ClientAuth)}). Adds to
         * {@link #tlsTrustDirectory(Path)} and {@link #tlsTrustPem(String)}. Turns TLS on.
         *
         * @param file a PEM file of trusted certificates
         * @return this builder
         */
        public Builder tlsTrust(Path file) {
            this.trustFile = Objects.requireNonNull(file);
            return this;
        }

        /**
         * Trust anchors from a directory hashed by {@code openssl rehash}; see {@link
         * #tlsTrust(Path)}.
         *
         * @param directory a directory of certificates hashed by {@code openssl rehash}
         * @return this builder
         */
        public Builder tlsTrustDirectory(Path directory) {
            this.trustDirectory = Objects.requireNonNull(directory);
            return this;
        }

        /**
         * Trust anchors given as PEM text; see {@link #tlsTrust(Path)}.
         *
         * @param pem trusted certificates as PEM text
         * @return this builder
         */
        public Builder tlsTrustPem(String pem) {
            this.trustPem = Objects.requireNonNull(pem);
            return this;
        }

        /**
         * Whether a TLS server asks clients for certificates, checked against the trust anchors
         * (since libnq 1.3, TCP; default {@link ClientAuth#NONE}). A refused client's {@code
         * get}, futures and {@code close} fail with {@link NqError#AUTH}; {@link
         * Communicator#peerIdentity(UUID)} tells what a client presented.
         *
         * @param auth whether clients are asked for a certificate, and must give one
         * @return this builder
         */
        public Builder clientAuth(ClientAuth auth) {
            return set(nqraw.NQ_OPT_TLS_CLIENT_AUTH, auth.code);
        }

        /**
         * The lowest TLS version accepted, either role (since libnq 1.3, TCP; default TLS 1.2).
         *
         * @param version the lowest TLS version accepted
         * @return this builder
         */
        public Builder tlsMinVersion(TlsVersion version) {
            return set(nqraw.NQ_OPT_TLS_MIN_VERSION, version.code);
        }

        /**
         * Server I/O threads (1..64).
         *
         * @param workers the number of threads
         * @return this builder
         */
        public Builder workers(int workers) {
            return set(nqraw.NQ_OPT_WORKERS, workers);
        }

        /**
         * Coalesce small frames before sending (default true).
         *
         * @param merge whether small frames are coalesced
         * @return this builder
         */
        public Builder putMerge(boolean merge) {
            return set(nqraw.NQ_OPT_PUT_MERGE, merge ? 1 : 0);
        }

        /**
         * Frames smaller than this are candidates for coalescing.
         *
         * @param bytes the size in bytes
         * @return this builder
         */
        public Builder efficientSize(long bytes) {
            return set(nqraw.NQ_OPT_EFFICIENT_SIZE, bytes);
        }

        /**
         * The largest piece handed to the transport at once.
         *
         * @param bytes the size in bytes
         * @return this builder
         */
        public Builder protocolSize(long bytes) {
            return set(nqraw.NQ_OPT_PROTOCOL_SIZE, bytes);
        }

        /**
         * Undelivered messages held per peer before libnq stops reading from it.
         *
         * @param messages the number of messages
         * @return this builder
         */
        public Builder queueSize(long messages) {
            return set(nqraw.NQ_OPT_QUEUE_SIZE, messages);
        }

        /**
         * What a full receive queue does (since libnq 1.3): false (the default) holds the peer
         * back until {@code get} makes room; true drops the peer's oldest waiting message for each
         * new one, on every transport, as net-queue 2.x's {@code drop_oldest} does.
         *
         * @param drop true to drop the oldest waiting message, false to hold the peer back
         * @return this builder
         */
        public Builder dropOldest(boolean drop) {
            return set(nqraw.NQ_OPT_DROP_OLDEST, drop ? 1 : 0);
        }

        /**
         * The largest message accepted from the wire.
         *
         * @param bytes the size in bytes
         * @return this builder
         */
        public Builder messageSize(long bytes) {
            return set(nqraw.NQ_OPT_MESSAGE_SIZE, bytes);
        }

        /**
         * Bytes of copied puts that may wait to be sent.
         *
         * @param bytes the number of bytes
         * @return this builder
         */
        public Builder sendLimit(long bytes) {
            return set(nqraw.NQ_OPT_SEND_LIMIT, bytes);
        }

        /**
         * A new connection must finish TLS and its handshake within this.
         *
         * @param timeout the time allowed
         * @return this builder
         */
        public Builder handshakeTimeout(Duration timeout) {
            return set(nqraw.NQ_OPT_HANDSHAKE_TIMEOUT_MS, timeout.toMillis());
        }

        /**
         * Idle time before TCP keep-alive probes start; zero disables them.
         *
         * @param idle the idle time; zero disables the probes
         * @return this builder
         */
        public Builder keepAlive(Duration idle) {
            return set(nqraw.NQ_OPT_KEEPALIVE_MS, idle.toMillis());
        }

        /**
         * Bounds {@link Communicator#close()}'s handshake (default: no bound).
         *
         * @param timeout the time allowed
         * @return this builder
         */
        public Builder closeTimeout(Duration timeout) {
            return set(nqraw.NQ_OPT_CLOSE_TIMEOUT_MS, timeout.toMillis());
        }

        /**
         * Client reconnection (since libnq 1.1; off by default): after a lost connection or a
         * failed connect, connect again after {@code first}, doubling the delay up to {@code max}.
         * Meanwhile puts queue and gets wait.
         *
         * @param first the delay before the first attempt
         * @param max the longest delay between attempts
         * @return this builder
         */
        public Builder reconnect(Duration first, Duration max) {
            set(nqraw.NQ_OPT_RECONNECT_MS, first.toMillis());
            return set(nqraw.NQ_OPT_RECONNECT_MAX_MS, max.toMillis());
        }

        /**
         * Stop reconnecting this long after a loss (default: never).
         *
         * @param after how long after a loss to stop
         * @return this builder
         */
        public Builder reconnectGiveUp(Duration after) {
            return set(nqraw.NQ_OPT_RECONNECT_GIVE_UP_MS, after.toMillis());
        }

        /**
         * Acknowledged delivery (since libnq 1.2), between libnq peers that both ask for it over
         * TCP or TLS: a put's future completes when the peer has the message, and a reconnecting
         * client's session goes on where it stopped, nothing lost or repeated. With any other peer,
         * net-queue's meaning (the message was handed to the connection).
         *
         * @return this builder
         */
        public Builder acknowledged() {
            return set(nqraw.NQ_OPT_DELIVERY, nqraw.NQ_DELIVERY_ACKED);
        }

        /**
         * Server with acknowledged delivery: how long a lost peer's session waits for its return.
         *
         * @param window how long a lost peer's session is kept
         * @return this builder
         */
        public Builder resumeWindow(Duration window) {
            return set(nqraw.NQ_OPT_RESUME_MS, window.toMillis());
        }

        /**
         * MQTT publish and subscribe QoS (0..2, default 1).
         *
         * @param qos the QoS, 0, 1 or 2
         * @return this builder
         */
        public Builder mqttQos(int qos) {
            return set(nqraw.NQ_OPT_MQTT_QOS, qos);
        }

        /**
         * MQTT topic prefix, so that several servers can share a broker.
         *
         * @param prefix the topic prefix
         * @return this builder
         */
        public Builder mqttPrefix(String prefix) {
            this.mqttPrefix = Objects.requireNonNull(prefix);
            return this;
        }

        /**
         * The MQTT broker login, sent by either role (since libnq 1.4). The password travels in
         * clear text unless TLS is on. A broker that refuses it fails {@link Communicator#open}
         * with {@link NqError#AUTH}; other transports refuse a login with {@link
         * NqError#NOT_SUPPORTED}.
         *
         * @param user the user name, not empty
         * @param password the password, or {@code null} for none (or {@link
         *     #secret(SecretSource)}'s)
         * @return this builder
         * @throws IllegalArgumentException when user is empty
         */
        public Builder login(String user, String password) {
            this.user = notEmpty(user, "login: the user");
            this.password = password;
            return this;
        }

        /**
         * A gRPC client's bearer token, sent with every call over TLS (since libnq 1.4; without
         * TLS the communicator does not open: a token never travels in clear). A server that does
         * not accept it refuses the client: its {@code get}, futures and {@code close} fail with
         * {@link NqError#AUTH}.
         *
         * @param token the token, printable ASCII without spaces
         * @return this builder
         * @throws IllegalArgumentException when token is empty
         */
        public Builder token(String token) {
            this.token = notEmpty(token, "token: the token");
            return this;
        }

        /**
         * A gRPC server accepts clients presenting this bearer token and names them {@code
         * identity} (since libnq 1.4); called again it adds another token. Once any token is
         * accepted, a client without one of them is refused. {@link
         * Communicator#peerIdentity(UUID)} of an accepted client ends in {@code
         * "token:<identity>"}.
         *
         * @param token the token, printable ASCII without spaces
         * @param identity the name of the clients presenting it (no newline or tab)
         * @return this builder
         * @throws IllegalArgumentException when token is empty
         */
        public Builder acceptToken(String token, String identity) {
            acceptedTokens.put(notEmpty(token, "acceptToken: the token"),
                    Objects.requireNonNull(identity, "identity"));
            return this;
        }

        /**
         * Gives the secret of every connection attempt (since libnq 1.4): the MQTT password
         * (with {@link #login}'s user) or the gRPC token, asked for again before each
         * reconnection; it replaces the password or token given here. The source is held until
         * every communicator opened with these options is closed and freed.
         *
         * @param source the source of the secret
         * @return this builder
         */
        public Builder secret(SecretSource source) {
            this.secret = Objects.requireNonNull(source, "source");
            return this;
        }

        /**
         * The name a TLS client expects in the server's certificate and sends as SNI (over gRPC
         * also the call's {@code :authority}), when it differs from the host connected to (since
         * libnq 1.4).
         *
         * @param name the server's name, at most 255 bytes
         * @return this builder
         * @throws IllegalArgumentException when name is empty
         */
        public Builder tlsServerName(String name) {
            this.serverName = notEmpty(name, "tlsServerName: the name");
            return this;
        }

        /**
         * The ALPN protocols offered to an MQTT broker over TLS (since libnq 1.4), such as
         * {@code "x-amzn-mqtt-ca"} for AWS IoT Core on port 443.
         *
         * @param protocols one or more protocol names, each 1 to 255 bytes without a comma
         * @return this builder
         * @throws IllegalArgumentException when no protocol is given or one is not such a name
         */
        public Builder tlsAlpn(String... protocols) {
            if (protocols.length == 0) {
                throw new IllegalArgumentException("tlsAlpn: no protocol given");
            }
            for (String name : protocols) {
                if (Objects.requireNonNull(name, "protocol").isEmpty() || name.contains(",")
                        || name.getBytes(StandardCharsets.UTF_8).length > 255) {
                    throw new IllegalArgumentException("tlsAlpn: \"" + name
                            + "\" is not a protocol name of 1 to 255 bytes without a comma");
                }
            }
            this.alpn = List.of(protocols);
            return this;
        }

        /**
         * The client id given to the MQTT broker instead of this communicator's id in hex (since
         * libnq 1.4), for brokers that bind client ids to logins or cap their length.
         *
         * @param clientId the client id, 1 to 65535 bytes
         * @return this builder
         * @throws IllegalArgumentException when clientId is empty
         */
        public Builder mqttClientId(String clientId) {
            this.mqttClientId = notEmpty(clientId, "mqttClientId: the client id");
            return this;
        }

        /**
         * The largest MQTT publish the broker takes (since libnq 1.4; AWS IoT Core: 131072);
         * messages of any size still go through, in more slices. Default: libnq's slices.
         *
         * @param bytes the size in bytes, 1024 to 2^28
         * @return this builder
         */
        public Builder mqttMaxPublish(long bytes) {
            return set(nqraw.NQ_OPT_MQTT_MAX_PUBLISH, bytes);
        }

        /**
         * The options set so far.
         *
         * @return the options, which later changes to this builder do not touch
         */
        public Options build() {
            return new Options(this);
        }

        /** value, unless it is null or empty; what names it in the exception. */
        private static String notEmpty(String value, String what) {
            if (Objects.requireNonNull(value, what).isEmpty()) {
                throw new IllegalArgumentException(what + " is empty");
            }
            return value;
        }

        private Builder set(int option, long value) {
            ints.put(option, value);
            return this;
        }
    }
}
