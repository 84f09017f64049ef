package org.libnq;

import java.nio.charset.StandardCharsets;

/**
 * A {@link SecretSource} as libnq calls it: nq.i's secret trampoline calls {@link #secret()}
 * through JNI on the connecting thread and copies the bytes.
 */
final class Secrets {
    private final SecretSource source;

    Secrets(SecretSource source) {
        this.source = source;
    }

    /** The source's secret as UTF-8, or null (the attempt fails) when it has none or throws. */
    byte[] secret() {
        try {
            String secret = source.secret();
            return secret == null ? null : secret.getBytes(StandardCharsets.UTF_8);
        } catch (Exception e) {
            // The attempt fails with NqError.AUTH; why is told here, as a peer listener's
            // trouble is.
            Thread t = Thread.currentThread();
            t.getUncaughtExceptionHandler().uncaughtException(t, e);
            return null;
        }
    }
}
