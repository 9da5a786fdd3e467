/* IPv6 fixed header (RFC 8200).
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Version| Traffic Class |           Flow Label                  |
 * |         Payload Length        |  Next Header  |   Hop Limit   |
 * |                 Source Address (128 bits)                     |
 * |              Destination Address (128 bits)                   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
#ifndef VTEP_IPV6_H
#define VTEP_IPV6_H

#include "util.h"

#define VTEP_IPV6_HLEN 40
#define VTEP_IPV6_NH_HOPOPTS 0
#define VTEP_IPV6_NH_ROUTING 43
#define VTEP_IPV6_NH_FRAGMENT 44
#define VTEP_IPV6_NH_ESP 50
#define VTEP_IPV6_NH_AH 51
#define VTEP_IPV6_NH_DSTOPTS 60

struct vtep_ipv6_hdr {
    /* version(4) traffic class(8) flow label(20), network order.  Bytes, so
     * the struct needs no more than 2-byte alignment, which is all it gets
     * after an Ethernet header. */
    uint8_t ver_tc_flow[4];
    vtep_be16_t payload_len;
    uint8_t nexthdr;
    uint8_t hop_limit;
    uint8_t saddr[16];
    uint8_t daddr[16];
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_ipv6_hdr) == VTEP_IPV6_HLEN, "IPv6 header is 40 bytes");

VTEP_INLINE unsigned vtep_ipv6_version(const struct vtep_ipv6_hdr *ip6)
{
    return ((const uint8_t *)ip6)[0] >> 4;
}

/* Traffic class byte (DSCP << 2 | ECN). */
VTEP_INLINE uint8_t vtep_ipv6_tclass(const struct vtep_ipv6_hdr *ip6)
{
    const uint8_t *b = (const uint8_t *)ip6;
    return (uint8_t)((b[0] & 0x0f) << 4 | b[1] >> 4);
}

/* Whether "nh" is an extension header that may precede the upper layer. */
VTEP_INLINE int vtep_ipv6_is_extension(uint8_t nh)
{
    return nh == VTEP_IPV6_NH_HOPOPTS || nh == VTEP_IPV6_NH_ROUTING || nh == VTEP_IPV6_NH_FRAGMENT
        || nh == VTEP_IPV6_NH_DSTOPTS || nh == VTEP_IPV6_NH_AH || nh == VTEP_IPV6_NH_ESP;
}

#endif
