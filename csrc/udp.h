/* UDP header (RFC 768).
 *
 * +--------+--------+--------+--------+
 * |  source port    |  dest port      |
 * |  length         |  checksum       |
 * +--------+--------+--------+--------+
 * Over IPv4 a zero checksum means "none"; over IPv6 it must be computed
 * (RFC 8200 section 8.1; RFC 6935 allows zero for tunnels by configuration,
 * which vtep does not offer: it always sends and requires one). */
#ifndef VTEP_UDP_H
#define VTEP_UDP_H

#include "util.h"

#define VTEP_UDP_HLEN 8

struct vtep_udp_hdr {
    vtep_be16_t source;
    vtep_be16_t dest;
    vtep_be16_t len;
    vtep_be16_t check;
};
VTEP_BUILD_ASSERT(sizeof(struct vtep_udp_hdr) == VTEP_UDP_HLEN, "UDP header is 8 bytes");

#endif
