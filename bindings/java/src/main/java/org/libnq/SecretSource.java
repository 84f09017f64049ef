package org.libnq;

/**
 * Gives the secret of one connection attempt ({@link Options.Builder#secret}): the MQTT password
 * (with {@link Options.Builder#login}'s user) or the gRPC bearer token, asked for again before
 * every connection and reconnection, so that an expiring secret is renewed in time.
 *
 * <p>It runs on the thread that connects, which may be one of libnq's or the MQTT library's
 * (attached to the JVM for the call): it must return quickly and must not use the communicator.
 * An exception or {@code null} fails the attempt with {@link NqError#AUTH}; the exception goes
 * to the calling thread's uncaught exception handler.
 *
 * @since libnq 1.4
 */
@FunctionalInterface
public interface SecretSource {
    /**
     * The secret for the connection attempt about to start.
     *
     * @return the password or token; {@code null} fails the attempt
     * @throws Exception when no secret can be had; the attempt fails
     */
    String secret() throws Exception;
}
