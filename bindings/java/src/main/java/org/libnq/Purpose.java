package org.libnq;

import org.libnq.internal.nqraw;

/** The role of a communicator. */
public enum Purpose {
    /** Connects to one server. */
    CLIENT(nqraw.NQ_CLIENT),
    /** Accepts many clients. */
    SERVER(nqraw.NQ_SERVER);

    final int code;

    Purpose(int code) {
        this.code = code;
    }
}
