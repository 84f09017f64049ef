package org.libnq;

import org.libnq.internal.nqraw;

/** libnq's error codes (NQ_E* in nq/nq.h). */
public enum NqError {
    /** An argument or option is invalid. */
    INVALID(nqraw.NQ_EINVAL),
    /** Out of memory. */
    NO_MEMORY(nqraw.NQ_ENOMEM),
    /** The wait ended before the event. */
    TIMED_OUT(nqraw.NQ_ETIMEDOUT),
    /** The communicator is closed. */
    CLOSED(nqraw.NQ_ECLOSED),
    /** The connection was lost. */
    CONNECTION_RESET(nqraw.NQ_ECONNRESET),
    /** No such peer is connected. */
    NO_PEER(nqraw.NQ_ENOPEER),
    /** TLS failed (handshake, certificate, key). */
    TLS(nqraw.NQ_ETLS),
    /** The peer broke the wire protocol. */
    PROTOCOL(nqraw.NQ_EPROTO),
    /** The server refused the connection. */
    CONNECTION_REFUSED(nqraw.NQ_ECONNREFUSED),
    /** The host name or address cannot be used. */
    ADDRESS(nqraw.NQ_EADDR),
    /** The server's address is in use. */
    ADDRESS_IN_USE(nqraw.NQ_EADDRINUSE),
    /** Not supported (a protocol not built in, an option the transport cannot use, ...). */
    NOT_SUPPORTED(nqraw.NQ_ENOTSUP),
    /** A system call failed. */
    SYSTEM(nqraw.NQ_ESYS),
    /** A send limit was reached; nothing was queued. */
    FULL(nqraw.NQ_EFULL),
    /** The serializer callback failed. */
    SERIALIZE(nqraw.NQ_ESERIALIZE),
    /** The future has not completed yet. */
    PENDING(nqraw.NQ_EPENDING),
    /** The peer connected again with the same id (since libnq 1.1). */
    REPLACED(nqraw.NQ_EREPLACED),
    /** The put was withdrawn by cancelling its future (since libnq 1.2). */
    CANCELED(nqraw.NQ_ECANCELED),
    /**
     * TLS credentials were refused (since libnq 1.3): the server would not take this client's
     * certificate (none, or one its anchors do not trust), or the other way round.
     */
    AUTH(nqraw.NQ_EAUTH),
    /** A code this version of the binding does not know. */
    UNKNOWN(Integer.MIN_VALUE);

    private final int code;

    NqError(int code) {
        this.code = code;
    }

    /**
     * The negative NQ_E* number.
     *
     * @return the negative NQ_E* number
     */
    public int code() {
        return code;
    }

    /**
     * libnq's sentence for this error.
     *
     * @return libnq's sentence for this error ({@code nq_strerror})
     */
    public String description() {
        return nqraw.nq_strerror(code);
    }

    static NqError of(int code) {
        for (NqError e : values()) {
            if (e.code == code) {
                return e;
            }
        }
        return UNKNOWN;
    }
}
