package org.libnq;

import java.util.UUID;

/**
 * Hears of peers coming and going ({@link Options.Builder#peerListener}). Calls come in order
 * for any one peer (a connection, then at most one disconnection) on one thread of the
 * communicator, so they should return quickly.
 *
 * @since libnq 1.1
 */
public interface PeerListener {
    /**
     * A peer introduced itself: a server's client, or a client's server.
     *
     * @param peer the peer's identity
     */
    default void connected(UUID peer) {
    }

    /**
     * A peer is gone: {@code reason} is {@code null} when it closed cleanly, else how its
     * connection ended ({@link NqError#CLOSED}: our close dropped it, {@link
     * NqError#CONNECTION_RESET}: lost, {@link NqError#REPLACED}: it connected again with its id,
     * ...).
     *
     * @param peer the peer's identity
     * @param reason how its connection ended, or {@code null} for a clean close
     */
    default void disconnected(UUID peer, NqError reason) {
    }

    /**
     * A client with {@link Options.Builder#reconnect} will connect again: {@code server} is the
     * last server it knew ({@code null} before the first), {@code reason} why the last connection
     * or attempt ended ({@code null} for a clean close).
     *
     * @param server the last server the client knew, or {@code null}
     * @param reason why the last connection or attempt ended, or {@code null}
     */
    default void reconnecting(UUID server, NqError reason) {
    }
}
