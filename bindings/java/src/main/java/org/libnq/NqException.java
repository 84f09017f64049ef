package org.libnq;

import java.io.IOException;
import org.libnq.internal.nqraw;

/** A libnq error: the communicator is closed, a connection was lost or refused, TLS failed, ... */
public class NqException extends IOException {
    private static final long serialVersionUID = 1L;

    private final int code;

    public NqException(int code) {
        super(nqraw.nq_strerror(code));
        this.code = code;
    }

    /** Which error it is. */
    public NqError error() {
        return NqError.of(code);
    }

    /** The negative NQ_E* number. */
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
