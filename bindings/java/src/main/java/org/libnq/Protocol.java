package org.libnq;

import org.libnq.internal.nqraw;

/** The transport of a communicator. */
public enum Protocol {
    /** TCP, with TLS when the options carry it. */
    TCP(nqraw.NQ_TCP),
    /** MQTT through a broker: both roles give the broker's address. */
    MQTT(nqraw.NQ_MQTT),
    /** A gRPC bidirectional stream. */
    GRPC(nqraw.NQ_GRPC);

    final int code;

    Protocol(int code) {
        this.code = code;
    }
}
