/*
 * tlsinfo.h: what OpenSSL's errors say about credentials, shared by the
 * transports that run or watch TLS (tcp/tls.c, mqtt/login.c).
 */
#ifndef NQ_TRANSPORTS_TLSINFO_H
#define NQ_TRANSPORTS_TLSINFO_H

/* 1 when the OpenSSL error e is the peer's alert about our credentials
 * (certificate required, bad, unknown CA, expired, revoked, access
 * denied), -1 when our check of the peer's certificate failed (a refusal
 * only when we are the side checking clients), else 0. */
int nqi_tls_refusal(unsigned long e);

#endif
