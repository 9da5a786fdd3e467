/* UDP header (RFC 768).
 *
 * +--------+--------+--------+--------+
 * |  source port    |  dest port      |
 * |  length         |  checksum       |
 * +--------+--------+--------+--------+
 * A zero checksum means "none".  Over IPv4 that is ordinary; over IPv6,
 * RFC 8200 requires a checksum but RFC 6935 lets tunnel protocols omit it.
 * vtep always sends one over IPv6 and accepts zero from peers. */
#ifndef VTEP_UDP_H
#define VTEP_UDP_H

#include "util.h"

#define VTEP_UDP_HLEN 8

struct vtep_udp_hdr {
    vtep_be16_t source;
    vtep_be16_t dest;
    vtep_be16_t len;
    vtep_be16_t check;
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_udp_hdr) == VTEP_UDP_HLEN, "UDP header is 8 bytes");

#endif
