import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.libnq.Communicator;
import org.libnq.Message;
import org.libnq.Options;
import org.libnq.Protocol;
import org.libnq.Purpose;

/**
 * An echo over TCP with the installed jar (libnq-java), built with
 * {@code javac -cp /usr/share/java/libnq.jar} and run with {@code java -cp}: a server on
 * 127.0.0.1, on a port the system picks, sends its client's message back. Prints
 * "echo TEXT" with what came back.
 */
public final class Echo {
    private Echo() {}

    public static void main(String[] args) throws Exception {
        Duration wait = Duration.ofSeconds(30);
        String text = args.length > 0 ? args[0] : "hello";
        try (Communicator server = Communicator.open(Protocol.TCP, Purpose.SERVER,
                     Options.builder().address("127.0.0.1", 0).build());
             Communicator client = Communicator.open(Protocol.TCP, Purpose.CLIENT,
                     Options.builder().address("127.0.0.1", server.localPort()).build())) {
            client.put(text.getBytes(StandardCharsets.UTF_8)).join();
            Message request = server.get(wait);
            server.put(request.data(), request.peer()).join();
            System.out.println("echo " + new String(client.get(wait).data(), StandardCharsets.UTF_8));
        }
    }
}
