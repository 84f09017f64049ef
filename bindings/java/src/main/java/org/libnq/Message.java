package org.libnq;

import java.util.UUID;

/**
 * A received message.
 *
 * @param peer the sender
 * @param data the payload, owned by the receiver
 */
public record Message(UUID peer, byte[] data) {
}
