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

    /** Whether id is one of the ids packed in ids (16 bytes each). */
    static boolean contains(byte[] ids, UUID id) {
        byte[] one = toBytes(id);
        for (int at = 0; at + 16 <= ids.length; at += 16) {
            if (java.util.Arrays.equals(ids, at, at + 16, one, 0, 16)) {
                return true;
            }
        }
        return false;
    }

    static UUID fromBytes(byte[] bytes) {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        return new UUID(b.getLong(), b.getLong());
    }
}
