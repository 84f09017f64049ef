package org.libnq;

import java.nio.ByteBuffer;
import java.util.UUID;

/** UUIDs to and from libnq's 16-byte ids (the byte order of the text form). */
final class Ids {
    private Ids() {
    }

    static byte[] toBytes(UUID... ids) {
        ByteBuffer b = ByteBuffer.allocate(16 * ids.length);
        for (UUID id : ids) {
            b.putLong(id.getMostSignificantBits()).putLong(id.getLeastSignificantBits());
        }
        return b.array();
    }

    static UUID fromBytes(byte[] bytes) {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        return new UUID(b.getLong(), b.getLong());
    }
}
