/* IPv4 header (RFC 791).
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Version|  IHL  |    DSCP   |ECN|          Total Length         |
 * |         Identification        |Flags|      Fragment Offset    |
 * |  Time to Live |    Protocol   |         Header Checksum       |
 * |                       Source Address                          |
 * |                    Destination Address                        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * Addresses are kept as bytes: after Ethernet they are only 2-byte aligned,
 * and the fast path only copies and compares them. */
#ifndef VTEP_IPV4_H
#define VTEP_IPV4_H

#include "util.h"

#define VTEP_IPV4_HLEN 20
#define VTEP_IPV4_DF 0x4000       /* host order, in frag_off */
#define VTEP_IPV4_MF 0x2000
#define VTEP_IPV4_OFFSET 0x1fff
#define VTEP_IPPROTO_TCP 6
#define VTEP_IPPROTO_UDP 17
#define VTEP_IPPROTO_GRE 47

struct vtep_ipv4_hdr {
    uint8_t ver_ihl;
    uint8_t tos;           /* DSCP << 2 | ECN */
    vtep_be16_t tot_len;
    vtep_be16_t id;
    vtep_be16_t frag_off;  /* flags and fragment offset */
    uint8_t ttl;
    uint8_t protocol;
    vtep_be16_t check;
    uint8_t saddr[4];
    uint8_t daddr[4];
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_ipv4_hdr) == VTEP_IPV4_HLEN, "IPv4 header is 20 bytes");

VTEP_INLINE unsigned vtep_ipv4_version(const struct vtep_ipv4_hdr *ip) { return ip->ver_ihl >> 4; }
/* Header length in bytes. */
VTEP_INLINE unsigned vtep_ipv4_hlen(const struct vtep_ipv4_hdr *ip) { return (ip->ver_ihl & 0xf) * 4u; }

#endif
