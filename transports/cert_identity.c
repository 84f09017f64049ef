/*
 * The identity text of a peer's certificate (see cert_identity.h), one
 * format for every transport that checks certificates.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "transports/cert_identity.h"

char *nqi_cert_identity(X509 *x)
{
    if (x == NULL) {
        return NULL;
    }
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) {
        return NULL;
    }
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_EMAIL) {
            const char *kind = g->type == GEN_DNS ? "DNS" : g->type == GEN_URI ? "URI" : "email";
            BIO_printf(b, "\n%s:%.*s", kind, ASN1_STRING_length(g->d.ia5),
                       (const char *)ASN1_STRING_get0_data(g->d.ia5));
        } else if (g->type == GEN_IPADD) {
            int n = ASN1_STRING_length(g->d.ip);
            char text[INET6_ADDRSTRLEN] = "";
            if (n == 4 || n == 16) {
                inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.ip), text,
                          sizeof(text));
                BIO_printf(b, "\nIP:%s", text);
            }
        }
    }
    GENERAL_NAMES_free(names);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text != NULL) {
        memcpy(text, data, (size_t)n);
        text[n] = '\0';
    }
    BIO_free(b);
    return text;
}

char *nqi_cert_identity_pem(const char *pem, size_t len)
{
    if (pem == NULL || len == 0 || len > INT_MAX) {
        return NULL;
    }
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    char *text = nqi_cert_identity(x);
    X509_free(x);
    BIO_free(b);
    return text;
}
