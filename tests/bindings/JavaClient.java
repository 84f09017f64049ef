import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.libnq.Communicator;
import org.libnq.Message;
import org.libnq.Options;
import org.libnq.Protocol;
import org.libnq.Purpose;

/** The Java client of the mixed-language smoke test (run as a source file). */
public class JavaClient {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        try (Communicator c = Communicator.open(Protocol.TCP, Purpose.CLIENT,
                Options.builder().address("127.0.0.1", port).build())) {
            c.put("hello from java".getBytes(StandardCharsets.UTF_8)).join();
            for (int i = 0; i < 2; i++) {
                Message m = c.get(Duration.ofSeconds(60));
                System.out.println("java client got \"" + new String(m.data(), StandardCharsets.UTF_8) + "\"");
            }
        }
    }
}
