/* NVGRE: GRE (RFC 2784, key extension RFC 2890) as profiled by RFC 7637.
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |0| |1|0|   Reserved0     | Ver |   Protocol Type 0x6558        |
 * |               Virtual Subnet ID (VSID)        |    FlowID     |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * C (checksum) and S (sequence) MUST be zero, K MUST be one (RFC 7637
 * section 3.2).  Receive is strict: the first 16 bits must be exactly K,
 * which also rejects GRE versions other than 0. */
#ifndef VTEP_NVGRE_H
#define VTEP_NVGRE_H

#include "util.h"

#define VTEP_NVGRE_HLEN 8
#define VTEP_GRE_FLAG_K 0x2000   /* host order, in flags_ver */
#define VTEP_GRE_VERSION 0x0007

struct vtep_nvgre_hdr {
    vtep_be16_t flags_ver;  /* C R K S s Recur(3) Flags(5) Ver(3) */
    vtep_be16_t protocol;   /* VTEP_ETH_P_TEB */
    uint8_t key[4];         /* VSID(24) << 8 | FlowID(8), network order */
} VTEP_WIRE;
VTEP_BUILD_ASSERT(sizeof(struct vtep_nvgre_hdr) == VTEP_NVGRE_HLEN, "NVGRE header is 8 bytes");

/* Host-order VSID. */
VTEP_INLINE uint32_t vtep_nvgre_vsid(const struct vtep_nvgre_hdr *gre)
{
    return vtep_get_be32(gre->key) >> 8;
}

VTEP_INLINE uint8_t vtep_nvgre_flow_id(const struct vtep_nvgre_hdr *gre)
{
    return gre->key[3];
}

VTEP_INLINE void vtep_nvgre_set_key(struct vtep_nvgre_hdr *gre, uint32_t vsid, uint8_t flow_id)
{
    vtep_put_be32(gre->key, vsid << 8 | flow_id);
}

#endif
