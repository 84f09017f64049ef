/*
 * cert_identity.h: what a peer's certificate says about it, in the form
 * nq_peer_identity reports: the subject in RFC 2253 form ("CN=client-a,
 * O=Example"), then one line per subject alternative name
 * ("\nDNS:client-a.example", "\nIP:127.0.0.1", "\nURI:...", "\nemail:...").
 * TLS over TCP has the certificate from OpenSSL, gRPC as PEM text.
 */
#ifndef NQ_TRANSPORTS_CERT_IDENTITY_H
#define NQ_TRANSPORTS_CERT_IDENTITY_H

#include <openssl/x509.h>
#include <stddef.h>

/* The text for cert, malloc'd (the caller frees it), or NULL without a
 * certificate or memory. */
char *nqi_cert_identity(X509 *cert);

/* The same for the first certificate in len bytes of PEM text, or NULL
 * when there is none. */
char *nqi_cert_identity_pem(const char *pem, size_t len);

#endif
