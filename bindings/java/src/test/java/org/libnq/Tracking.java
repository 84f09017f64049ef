package org.libnq;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import org.junit.jupiter.api.AfterEach;

/** What the tests share: how long a wait may take, and the communicators a test opened. */
abstract class Tracking {
    static final Duration WAIT = Duration.ofSeconds(10);

    /** Opened communicators, closed newest first (clients before their server). */
    private final Deque<Communicator> open = new ArrayDeque<>();

    @AfterEach
    void closeAll() {
        while (!open.isEmpty()) {
            try {
                open.pop().close();
            } catch (NqException e) {
                // The test already checked what it needed.
            }
        }
    }

    /** Closes c when the test ends. */
    Communicator track(Communicator c) {
        open.push(c);
        return c;
    }
}
