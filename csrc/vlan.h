/* IEEE 802.1Q / 802.1ad tag, which sits where the EtherType was.
 *
 * +-------+-------+
 * |  TPID |  TCI  |   TPID 0x8100 (C-tag) or 0x88a8 (S-tag), then the inner type
 * +-------+-------+
 * Access ports carry untagged frames only: a tagged frame there is dropped
 * (no VLAN hopping), and so is a tagged frame inside a tunnel (RFC 7348
 * section 6.1: a decapsulated frame with an inner VLAN tag SHOULD be discarded
 * unless configured otherwise). */
#ifndef VTEP_VLAN_H
#define VTEP_VLAN_H

#include "util.h"

#define VTEP_ETH_P_8021Q 0x8100
#define VTEP_ETH_P_8021AD 0x88a8
#define VTEP_VLAN_HLEN 4

struct vtep_vlan_hdr {
    vtep_be16_t tci;        /* PCP(3) DEI(1) VID(12) */
    vtep_be16_t inner_type; /* EtherType of what follows */
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_vlan_hdr) == VTEP_VLAN_HLEN, "802.1Q tag is 4 bytes");

/* Whether host-order EtherType "type" announces a VLAN tag. */
VTEP_INLINE int vtep_vlan_is_tag(uint16_t type)
{
    return type == VTEP_ETH_P_8021Q || type == VTEP_ETH_P_8021AD;
}

#endif
