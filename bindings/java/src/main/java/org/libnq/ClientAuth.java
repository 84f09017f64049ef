package org.libnq;

/**
 * Whether a TLS server asks clients for certificates (since libnq 1.3, TCP): see {@link
 * Options.Builder#clientAuth(ClientAuth)}.
 */
public enum ClientAuth {
    /** Clients are not asked (the default, net-queue's behaviour). */
    NONE(0),
    /**
     * A certificate a client shows must verify against the trust anchors; a client without one is
     * served.
     */
    OPTIONAL(1),
    /** A client without a certificate the trust anchors verify is refused. */
    REQUIRED(2);

    final int code;

    ClientAuth(int code) {
        this.code = code;
    }
}
