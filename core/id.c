/* Peer identities: UUIDs in RFC 4122 byte order.  No state: any thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/base.h"

int nq_id_random(nq_id *out)
{
    if (out == NULL) {
        return NQ_EINVAL;
    }
    size_t have = 0;
    while (have < sizeof(out->bytes)) {
        ssize_t n = getrandom(out->bytes + have, sizeof(out->bytes) - have, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return NQ_ESYS;
        }
        have += (size_t)n;
    }
    out->bytes[6] = (uint8_t)((out->bytes[6] & 0x0f) | 0x40); /* version 4 */
    out->bytes[8] = (uint8_t)((out->bytes[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return NQ_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int nq_id_parse(const char *text, nq_id *out)
{
    if (text == NULL || out == NULL) {
        return NQ_EINVAL;
    }
    size_t len = strlen(text);
    int dashed = len == 36;
    if (!dashed && len != 32) {
        return NQ_EINVAL;
    }
    nq_id id;
    size_t pos = 0;
    for (int i = 0; i < 16; i++) {
        if (dashed && (pos == 8 || pos == 13 || pos == 18 || pos == 23)) {
            if (text[pos] != '-') {
                return NQ_EINVAL;
            }
            pos++;
        }
        int hi = hexval(text[pos]);
        int lo = hexval(text[pos + 1]);
        if (hi < 0 || lo < 0) {
            return NQ_EINVAL;
        }
        id.bytes[i] = (uint8_t)(hi << 4 | lo);
        pos += 2;
    }
    *out = id;
    return NQ_OK;
}

int nq_id_format(const nq_id *id, char *buf, size_t buflen)
{
    if (id == NULL || buf == NULL || buflen < NQ_ID_STRLEN) {
        return NQ_EINVAL;
    }
    const uint8_t *b = id->bytes;
    snprintf(buf, buflen,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return NQ_OK;
}

int nq_id_equal(const nq_id *a, const nq_id *b)
{
    if (a == NULL || b == NULL) {
        return 0;
    }
    return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

void nqi_id_hex(const nq_id *id, char out[NQI_ID_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[id->bytes[i] >> 4];
        out[2 * i + 1] = digits[id->bytes[i] & 15];
    }
    out[NQI_ID_HEX_LEN] = 0;
}
