package org.libnq;

/** A TLS version, for {@link Options.Builder#tlsMinVersion(TlsVersion)} (since libnq 1.3). */
public enum TlsVersion {
    /** TLS 1.2, the lowest libnq offers by default. */
    TLS_1_2(12),
    /** TLS 1.3. */
    TLS_1_3(13);

    final int code;

    TlsVersion(int code) {
        this.code = code;
    }
}
