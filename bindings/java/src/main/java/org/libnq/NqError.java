package org.libnq;

import org.libnq.internal.nqraw;

/** libnq's error codes (NQ_E* in nq/nq.h). */
public enum NqError {
    INVALID(nqraw.NQ_EINVAL),
    NO_MEMORY(nqraw.NQ_ENOMEM),
    TIMED_OUT(nqraw.NQ_ETIMEDOUT),
    CLOSED(nqraw.NQ_ECLOSED),
    CONNECTION_RESET(nqraw.NQ_ECONNRESET),
    NO_PEER(nqraw.NQ_ENOPEER),
    TLS(nqraw.NQ_ETLS),
    PROTOCOL(nqraw.NQ_EPROTO),
    CONNECTION_REFUSED(nqraw.NQ_ECONNREFUSED),
    ADDRESS(nqraw.NQ_EADDR),
    ADDRESS_IN_USE(nqraw.NQ_EADDRINUSE),
    NOT_SUPPORTED(nqraw.NQ_ENOTSUP),
    SYSTEM(nqraw.NQ_ESYS),
    FULL(nqraw.NQ_EFULL),
    SERIALIZE(nqraw.NQ_ESERIALIZE),
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

    /** The negative NQ_E* number. */
    public int code() {
        return code;
    }

    /** libnq's sentence for this error. */
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
