package org.libnq.internal;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads the JNI library, libnqjni, once, before the first native call.
 *
 * <p>Where it comes from, first match wins: the file named by the system property
 * {@value #PATH_PROPERTY}; the copy the jar carries for this platform
 * ({@code org/libnq/internal/native/linux-x86_64/libnqjni.so}), extracted to a temporary
 * file that is deleted as soon as it is loaded; {@code System.loadLibrary("nqjni")}, which
 * searches {@code java.library.path}. This package is not part of libnq's API.
 */
final class NativeLoader {
    /** The system property naming a libnqjni.so to load instead of the jar's. */
    static final String PATH_PROPERTY = "libnq.jni.path";

    private NativeLoader() {}

    static synchronized void load() {
        String path = System.getProperty(PATH_PROPERTY);
        if (path != null && !path.isEmpty()) {
            System.load(path);
            return;
        }
        String resource = "native/" + platform() + "/" + System.mapLibraryName("nqjni");
        try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
            if (in == null) {
                System.loadLibrary("nqjni");
                return;
            }
            Path file = Files.createTempFile("libnqjni", ".so");
            try {
                Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
                System.load(file.toAbsolutePath().toString());
            } finally {
                // The loaded library stays mapped; its file is no longer needed.
                Files.deleteIfExists(file);
            }
        } catch (IOException e) {
            UnsatisfiedLinkError error = new UnsatisfiedLinkError(
                    "cannot extract the jar's " + resource + ": " + e.getMessage());
            error.initCause(e);
            throw error;
        }
    }

    /** This platform's folder in the jar, as in linux-x86_64. */
    private static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        if (os.startsWith("linux")) {
            os = "linux";
        }
        if (arch.equals("amd64") || arch.equals("x86_64")) {
            arch = "x86_64";
        }
        return os + "-" + arch;
    }
}
