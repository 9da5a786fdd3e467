/* Ethernet II header (IEEE 802.3).
 *
 *  0                   1
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3
 * +-----------+-----------+---+
 * |  dst MAC  |  src MAC  |typ|
 * +-----------+-----------+---+
 */
#ifndef VTEP_ETH_H
#define VTEP_ETH_H

#include "util.h"

#define VTEP_ETH_ALEN 6
#define VTEP_ETH_HLEN 14
#define VTEP_ETH_P_IPV4 0x0800
#define VTEP_ETH_P_ARP 0x0806
#define VTEP_ETH_P_IPV6 0x86dd
#define VTEP_ETH_P_TEB 0x6558 /* transparent Ethernet bridging: NVGRE payload */

struct vtep_eth_hdr {
    uint8_t dst[VTEP_ETH_ALEN];
    uint8_t src[VTEP_ETH_ALEN];
    vtep_be16_t type;
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_eth_hdr) == VTEP_ETH_HLEN, "Ethernet header is 14 bytes");

/* Group bit: set in broadcast and multicast addresses. */
VTEP_INLINE int vtep_eth_is_multicast(const uint8_t *mac)
{
    return mac[0] & 1;
}

VTEP_INLINE int vtep_eth_is_zero(const uint8_t *mac)
{
    static const uint8_t zero[VTEP_ETH_ALEN];
    return memcmp(mac, zero, VTEP_ETH_ALEN) == 0;
}

/* The 48-bit MAC at "mac" as a host-order integer: the FDB key. */
VTEP_INLINE uint64_t vtep_eth_key(const uint8_t *mac)
{
    return (uint64_t)vtep_get_be16(mac) << 32 | vtep_get_be32(mac + 2);
}

/* Host-order EtherType of the frame at "frame" (at least VTEP_ETH_HLEN bytes). */
VTEP_INLINE uint16_t vtep_eth_type(const uint8_t *frame)
{
    return vtep_get_be16(frame + 12);
}

#endif
