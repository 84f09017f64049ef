package org.libnq;

import java.io.IOException;
import org.libnq.internal.nqraw;

/** A libnq error: the communicator is closed, a connection was lost or refused, TLS failed, ... */
public class NqException extends IOException {
    private static final long serialVersionUID = 1L;

    /** The negative NQ_E* number. */
    private final int code;

    /**
     * The exception for a libnq error code, with libnq's sentence for it as its message.
     *
     * @param code a negative NQ_E* number
     */
    public NqException(int code) {
        super(nqraw.nq_strerror(code));
        this.code = code;
    }

    /**
     * Which error it is.
     *
     * @return the error, {@link NqError#UNKNOWN} for a code this binding does not know
     */
    public NqError error() {
        return NqError.of(code);
    }

    /**
     * The negative NQ_E* number.
     *
     * @return the code
     */
    public int code() {
        return code;
    }

    /** Throws the exception for code unless it is NQ_OK (0 or more); returns code. */
    static int check(int code) throws NqException {
        if (code < 0) {
            throw new NqException(code);
        }
        return code;
    }
}
