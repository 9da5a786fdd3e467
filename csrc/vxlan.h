/* VXLAN header (RFC 7348 section 5).
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |R|R|R|R|I|R|R|R|            Reserved                           |
 * |                VXLAN Network Identifier (VNI) |   Reserved    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Receive is strict: the I flag must be set and every reserved bit clear.
 * RFC 7348 says reserved bits are ignored on receipt; like Linux's vxlan_rcv
 * we drop instead, so a GBP or GPE frame is never taken for plain VXLAN. */
#ifndef VTEP_VXLAN_H
#define VTEP_VXLAN_H

#include "util.h"

#define VTEP_VXLAN_HLEN 8
#define VTEP_VXLAN_PORT 4789
#define VTEP_VXLAN_FLAG_I 0x08
#define VTEP_VNI_MAX 0xffffffu

struct vtep_vxlan_hdr {
    uint8_t flags;
    uint8_t reserved1[3];
    uint8_t vni[3];  /* network order */
    uint8_t reserved2;
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_vxlan_hdr) == VTEP_VXLAN_HLEN, "VXLAN header is 8 bytes");

/* Host-order VNI. */
VTEP_INLINE uint32_t vtep_vxlan_vni(const struct vtep_vxlan_hdr *vx)
{
    return (uint32_t)vx->vni[0] << 16 | (uint32_t)vx->vni[1] << 8 | vx->vni[2];
}

VTEP_INLINE void vtep_vxlan_set_vni(struct vtep_vxlan_hdr *vx, uint32_t vni)
{
    vx->vni[0] = (uint8_t)(vni >> 16);
    vx->vni[1] = (uint8_t)(vni >> 8);
    vx->vni[2] = (uint8_t)vni;
}

/* Whether the header is exactly "I set, all reserved bits clear". */
VTEP_INLINE int vtep_vxlan_flags_ok(const struct vtep_vxlan_hdr *vx)
{
    return vx->flags == VTEP_VXLAN_FLAG_I && (vx->reserved1[0] | vx->reserved1[1] | vx->reserved1[2]
                                              | vx->reserved2) == 0;
}

#endif
