package org.libnq;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** The README's example. */
class ExampleTest {
    @Test
    void serverAndClientExchangeOneMessageEach() throws Exception {
        try (Communicator server = Communicator.open(Protocol.TCP, Purpose.SERVER,
                     Options.builder().address("127.0.0.1", 0).build());
             Communicator client = Communicator.open(Protocol.TCP, Purpose.CLIENT,
                     Options.builder().address("127.0.0.1", server.localPort()).build())) {
            client.put("Hello, Server!".getBytes(StandardCharsets.UTF_8)).join();

            Message message = server.get(Duration.ofSeconds(10));
            server.put("Hello, Client!".getBytes(StandardCharsets.UTF_8), message.peer());

            Message reply = client.get(Duration.ofSeconds(10));
            assertEquals("Hello, Server!", new String(message.data(), StandardCharsets.UTF_8));
            assertEquals("Hello, Client!", new String(reply.data(), StandardCharsets.UTF_8));
        }
    }
}
