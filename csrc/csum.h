/* Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept as 32-bit one's-complement accumulators of 16-bit words in
 * network order (read as big-endian), folded only at the end. */
#ifndef VTEP_CSUM_H
#define VTEP_CSUM_H

#include <stddef.h>
#include "util.h"

/* Fold a 64-bit accumulator to 16 bits (not complemented). */
VTEP_INLINE uint16_t vtep_csum_fold(uint64_t sum)
{
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* Add the bytes at "data" to accumulator "sum"; an odd last byte is padded
 * with zero as RFC 1071 says.  Returns the new (unfolded) accumulator.
 *
 * The words are summed in the machine's order and the folded result is
 * byte-swapped once (RFC 1071 2.B: the sum is independent of byte order):
 * plain 32-bit loads into a 64-bit accumulator, which the compiler turns
 * into vector adds, twice as fast here as swapping every word. */
VTEP_INLINE uint64_t vtep_csum_add(uint64_t sum, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t acc = 0;
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        acc += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        acc += w;
        p += 2;
        len -= 2;
    }
    /* A last odd byte is the first of its word, as are the bytes the loads
     * put low in a little-endian machine's words. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (len)
        acc += p[0];
    return sum + __builtin_bswap16(vtep_csum_fold(acc));
#else
    if (len)
        acc += (uint32_t)p[0] << 8;
    return sum + vtep_csum_fold(acc);
#endif
}

/* RFC 1624 eqn. 3: the checksum "hc" after a 16-bit field changes from "m"
 * to "m_new", all host order: HC' = ~(~HC + ~m + m'). */
VTEP_INLINE uint16_t vtep_csum_update16(uint16_t hc, uint16_t m, uint16_t m_new)
{
    uint32_t sum = (uint16_t)~hc + (uint16_t)~m + (uint32_t)m_new;
    return (uint16_t)~vtep_csum_fold(sum);
}

#endif
