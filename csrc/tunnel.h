/* Encapsulation and decapsulation bodies, inlined into the burst loops and
 * into the single-packet API.
 *
 * Encapsulation is copy, patch, checksum: the outer headers come from the
 * tunnel's template (tunnel.c), and per packet we patch the lengths, the
 * DSCP, the UDP source port or NVGRE FlowID, and the VNI.  The IPv4 header
 * checksum is updated incrementally (RFC 1624) from the template's sum. */
#ifndef VTEP_TUNNEL_H
#define VTEP_TUNNEL_H

#include "vtep_packet.h"
#include "csum.h"
#include "eth.h"
#include "vlan.h"
#include "ipv4.h"
#include "ipv6.h"
#include "udp.h"
#include "vxlan.h"
#include "nvgre.h"

/* The flow hash mixes 32-bit words; tests/model.py mirrors it exactly. */
VTEP_INLINE uint32_t vtep_hash_mix(uint32_t h, uint32_t w)
{
    h = (h ^ w) * 0x9e3779b1u;
    return h ^ h >> 16;
}

VTEP_INLINE uint32_t vtep_hash_words(uint32_t h, const uint8_t *p, unsigned n_words)
{
    for (unsigned i = 0; i < n_words; i++)
        h = vtep_hash_mix(h, vtep_get_be32(p + 4 * i));
    return h;
}

/* See vtep_flow_hash() in vtep_packet.h.  Reads only what "len" covers. */
VTEP_INLINE uint32_t vtep_flow_hash_inline(const uint8_t *f, size_t len)
{
    uint32_t h = 0x2545f491u;
    if (len < VTEP_ETH_HLEN)
        return h;
    h = vtep_hash_words(h, f, 3);  /* both MACs */
    uint16_t type = vtep_eth_type(f);
    h = vtep_hash_mix(h, type);
    const uint8_t *l3 = f + VTEP_ETH_HLEN;
    size_t l3_len = len - VTEP_ETH_HLEN;
    uint8_t proto;
    const uint8_t *l4;
    size_t l4_len;
    if (type == VTEP_ETH_P_IPV4 && l3_len >= VTEP_IPV4_HLEN) {
        const struct vtep_ipv4_hdr *ip = (const void *)l3;
        h = vtep_hash_words(h, ip->saddr, 2);
        proto = ip->protocol;
        /* Later fragments carry no ports: hash addresses only. */
        if (vtep_get_be16(&ip->frag_off) & (VTEP_IPV4_MF | VTEP_IPV4_OFFSET))
            proto = 0;
        unsigned hlen = vtep_ipv4_hlen(ip);
        l4 = l3 + hlen;
        l4_len = l3_len >= hlen ? l3_len - hlen : 0;
    } else if (type == VTEP_ETH_P_IPV6 && l3_len >= VTEP_IPV6_HLEN) {
        const struct vtep_ipv6_hdr *ip6 = (const void *)l3;
        h = vtep_hash_words(h, ip6->saddr, 8);
        proto = ip6->nexthdr;
        l4 = l3 + VTEP_IPV6_HLEN;
        l4_len = l3_len - VTEP_IPV6_HLEN;
    } else {
        goto done;
    }
    h = vtep_hash_mix(h, proto);
    if ((proto == VTEP_IPPROTO_TCP || proto == VTEP_IPPROTO_UDP) && l4_len >= 4)
        h = vtep_hash_mix(h, vtep_get_be32(l4));
done:
    h ^= h >> 13;
    h *= 0x85ebca6bu;
    return h ^ h >> 16;
}

/* DSCP of the inner IP header (as a TOS byte, ECN bits clear), or 0. */
VTEP_INLINE uint8_t vtep_inner_dscp(const uint8_t *f, size_t len)
{
    if (len < VTEP_ETH_HLEN + 2)
        return 0;
    uint16_t type = vtep_eth_type(f);
    if (type == VTEP_ETH_P_IPV4)
        return f[VTEP_ETH_HLEN + 1] & 0xfc;
    if (type == VTEP_ETH_P_IPV6)
        return vtep_ipv6_tclass((const void *)(f + VTEP_ETH_HLEN)) & 0xfc;
    return 0;
}

/* Write the outer headers for "frame" into "hdr" (VTEP_HDR_ROOM bytes) and
 * return their length.  "ipv6" must equal t->family == 6; callers pass it as
 * a constant so each family gets its own compiled copy.  The caller has
 * checked len >= VTEP_ETH_HLEN and vni <= VTEP_VNI_MAX. */
VTEP_INLINE unsigned vtep_encap_inline(const vtep_tunnel_t *t, const int ipv6, uint32_t vni,
                                       const uint8_t *frame, uint32_t len, uint32_t hash,
                                       uint8_t *hdr)
{
    memcpy(hdr, t->tmpl, VTEP_HDR_ROOM);  /* fixed size: one unrolled copy */
    unsigned ip_len = ipv6 ? VTEP_IPV6_HLEN : VTEP_IPV4_HLEN;
    uint8_t *l4 = hdr + VTEP_ETH_HLEN + ip_len;
    unsigned l4_len = (unsigned)(t->len - VTEP_ETH_HLEN - ip_len) + len;  /* tunnel header + frame */
    uint8_t dscp = vtep_inner_dscp(frame, len);
    uint8_t proto;

    if (t->encapsulation == VTEP_ENCAP_VXLAN) {
        struct vtep_udp_hdr *udp = (void *)l4;
        struct vtep_vxlan_hdr *vx = (void *)(l4 + VTEP_UDP_HLEN);
        vtep_put_be16(&udp->source, (uint16_t)(t->port_min + ((uint64_t)hash * t->port_span >> 32)));
        vtep_put_be16(&udp->len, (uint16_t)l4_len);
        vtep_vxlan_set_vni(vx, vni);
        proto = VTEP_IPPROTO_UDP;
    } else {
        vtep_nvgre_set_key((void *)l4, vni, (uint8_t)hash);
        proto = VTEP_IPPROTO_GRE;
    }

    if (ipv6) {
        struct vtep_ipv6_hdr *ip6 = (void *)(hdr + VTEP_ETH_HLEN);
        vtep_put_be32(ip6->ver_tc_flow, 6u << 28 | (uint32_t)dscp << 20);
        vtep_put_be16(&ip6->payload_len, (uint16_t)l4_len);
    } else {
        struct vtep_ipv4_hdr *ip = (void *)(hdr + VTEP_ETH_HLEN);
        uint16_t tot_len = (uint16_t)(VTEP_IPV4_HLEN + l4_len);
        ip->tos = dscp;
        vtep_put_be16(&ip->tot_len, tot_len);
        /* RFC 1624: the template's tot_len and tos are zero, so adding the new
         * values to its sum is HC' = ~(~HC + m') with m = 0. */
        vtep_put_be16(&ip->check, (uint16_t)~vtep_csum_fold((uint64_t)t->ip_sum + tot_len + dscp));
    }

    if (proto == VTEP_IPPROTO_UDP && (ipv6 || t->udp_checksum)) {
        struct vtep_udp_hdr *udp = (void *)l4;
        uint64_t sum = (uint64_t)t->pseudo_sum + l4_len;
        sum = vtep_csum_add(sum, l4, VTEP_UDP_HLEN + VTEP_VXLAN_HLEN);
        sum = vtep_csum_add(sum, frame, len);
        uint16_t check = (uint16_t)~vtep_csum_fold(sum);
        vtep_put_be16(&udp->check, check ? check : 0xffff);  /* 0 means "none" */
    }
    return t->len;
}

/* Whether the upper-layer header at "l4" ("len" bytes) is tunnel traffic
 * for us: UDP to "dport", or GRE carrying Ethernet. */
VTEP_INLINE int vtep_is_tunnel_l4(const uint8_t *l4, size_t len, uint8_t proto, uint16_t dport)
{
    if (len < 4)
        return 0;
    if (proto == VTEP_IPPROTO_UDP)
        return vtep_get_be16(l4 + 2) == dport;
    return proto == VTEP_IPPROTO_GRE && vtep_get_be16(l4 + 2) == VTEP_ETH_P_TEB;
}

/* An IPv6 packet whose next header "nh" is an extension header.  We never
 * send them and refuse them on tunnel traffic (ip_options, or fragment), but
 * the host's own traffic has them (MLD carries hop-by-hop options) and is
 * not ours to count: walk a few to find the upper layer and tell which. */
VTEP_INLINE vtep_drop_t vtep_ipv6_extensions(const uint8_t *p, size_t len, uint8_t nh, uint16_t dport)
{
    vtep_drop_t why = VTEP_DROP_IP_OPTIONS;
    for (int i = 0; i < 8 && vtep_ipv6_is_extension(nh); i++) {
        if (nh == VTEP_IPV6_NH_ESP || len < 8)
            return VTEP_DROP_NOT_TUNNEL;  /* encrypted, or cut short: cannot tell */
        size_t hlen = (p[1] + 1u) * 8;
        if (nh == VTEP_IPV6_NH_AH) {
            hlen = (p[1] + 2u) * 4;
        } else if (nh == VTEP_IPV6_NH_FRAGMENT) {
            if (vtep_get_be16(p + 2) & 0xfff8)
                return VTEP_DROP_NOT_TUNNEL;  /* a later fragment shows no upper header */
            why = VTEP_DROP_FRAGMENT;
            hlen = 8;
        }
        if (len < hlen)
            return VTEP_DROP_NOT_TUNNEL;
        nh = p[0];
        p += hlen;
        len -= hlen;
    }
    return vtep_is_tunnel_l4(p, len, nh, dport) ? why : VTEP_DROP_NOT_TUNNEL;
}

/* Strict receive of one underlay frame: see vtep_decap() and the comments in
 * vxlan.h and nvgre.h for what is checked and why.  "verify_l4" is 0 when the
 * kernel already vouched for the UDP checksum (vtep_pkt_t flags). */
VTEP_INLINE vtep_drop_t vtep_decap_inline(const uint8_t *pkt, size_t len, uint16_t dport,
                                          vtep_decap_info_t *info, int verify_l4)
{
    if (len < VTEP_ETH_HLEN)
        return VTEP_DROP_RUNT;
    uint16_t type = vtep_eth_type(pkt);
    const uint8_t *l3 = pkt + VTEP_ETH_HLEN;
    size_t l3_len = len - VTEP_ETH_HLEN;  /* may include Ethernet padding */
    const uint8_t *l4;
    size_t l4_len;
    uint8_t proto;
    uint64_t pseudo;

    if (type == VTEP_ETH_P_IPV4) {
        const struct vtep_ipv4_hdr *ip = (const void *)l3;
        if (l3_len < VTEP_IPV4_HLEN)
            return VTEP_DROP_RUNT;
        unsigned hlen = vtep_ipv4_hlen(ip);
        if (vtep_ipv4_version(ip) != 4 || hlen < VTEP_IPV4_HLEN)
            return VTEP_DROP_BAD_HEADER;
        proto = ip->protocol;
        if (proto != VTEP_IPPROTO_UDP && proto != VTEP_IPPROTO_GRE)
            return VTEP_DROP_NOT_TUNNEL;
        if (l3_len < hlen)
            return VTEP_DROP_RUNT;
        unsigned tot_len = vtep_get_be16(&ip->tot_len);
        if (tot_len < hlen || tot_len > l3_len)
            return VTEP_DROP_BAD_HEADER;
        if (vtep_csum_fold(vtep_csum_add(0, ip, hlen)) != 0xffff)
            return VTEP_DROP_BAD_CHECKSUM;
        uint16_t frag = vtep_get_be16(&ip->frag_off);
        if (hlen != VTEP_IPV4_HLEN || (frag & (VTEP_IPV4_MF | VTEP_IPV4_OFFSET))) {
            /* Refused on tunnel traffic; on other traffic, the host's business.
             * A later fragment shows no upper header, so we cannot tell. */
            if ((frag & VTEP_IPV4_OFFSET) || !vtep_is_tunnel_l4(l3 + hlen, tot_len - hlen, proto, dport))
                return VTEP_DROP_NOT_TUNNEL;
            return hlen != VTEP_IPV4_HLEN ? VTEP_DROP_IP_OPTIONS : VTEP_DROP_FRAGMENT;
        }
        info->src.family = info->dst.family = 4;
        memcpy(info->src.bytes, ip->saddr, 4);
        memcpy(info->dst.bytes, ip->daddr, 4);
        info->tos = ip->tos;
        info->ttl = ip->ttl;
        l4 = l3 + VTEP_IPV4_HLEN;
        l4_len = tot_len - VTEP_IPV4_HLEN;
        pseudo = vtep_csum_add(0, ip->saddr, 8);
    } else if (type == VTEP_ETH_P_IPV6) {
        const struct vtep_ipv6_hdr *ip6 = (const void *)l3;
        if (l3_len < VTEP_IPV6_HLEN)
            return VTEP_DROP_RUNT;
        if (vtep_ipv6_version(ip6) != 6)
            return VTEP_DROP_BAD_HEADER;
        proto = ip6->nexthdr;
        if (vtep_ipv6_is_extension(proto))
            return vtep_ipv6_extensions(l3 + VTEP_IPV6_HLEN, l3_len - VTEP_IPV6_HLEN, proto, dport);
        if (proto != VTEP_IPPROTO_UDP && proto != VTEP_IPPROTO_GRE)
            return VTEP_DROP_NOT_TUNNEL;
        l4_len = vtep_get_be16(&ip6->payload_len);
        if (l4_len > l3_len - VTEP_IPV6_HLEN)
            return VTEP_DROP_BAD_HEADER;
        info->src.family = info->dst.family = 6;
        memcpy(info->src.bytes, ip6->saddr, 16);
        memcpy(info->dst.bytes, ip6->daddr, 16);
        info->tos = vtep_ipv6_tclass(ip6);
        info->ttl = ip6->hop_limit;
        l4 = l3 + VTEP_IPV6_HLEN;
        pseudo = vtep_csum_add(0, ip6->saddr, 32);
    } else {
        return VTEP_DROP_NOT_TUNNEL;
    }

    const uint8_t *inner;
    if (proto == VTEP_IPPROTO_UDP) {
        const struct vtep_udp_hdr *udp = (const void *)l4;
        if (l4_len < VTEP_UDP_HLEN)
            return VTEP_DROP_RUNT;
        if (vtep_get_be16(&udp->dest) != dport)
            return VTEP_DROP_NOT_TUNNEL;
        if (vtep_get_be16(&udp->len) != l4_len)
            return VTEP_DROP_BAD_HEADER;
        /* Zero is "no checksum": allowed over IPv4, and for tunnels over
         * IPv6 by RFC 6935, which peers (Linux udp6zerocsumtx) may use. */
        uint16_t check = vtep_get_be16(&udp->check);
        if (check && verify_l4 && vtep_csum_fold(vtep_csum_add(pseudo + VTEP_IPPROTO_UDP + l4_len, l4, l4_len)) != 0xffff)
            return VTEP_DROP_BAD_CHECKSUM;
        if (l4_len < VTEP_UDP_HLEN + VTEP_VXLAN_HLEN)
            return VTEP_DROP_RUNT;
        const struct vtep_vxlan_hdr *vx = (const void *)(l4 + VTEP_UDP_HLEN);
        if (!vtep_vxlan_flags_ok(vx))
            return VTEP_DROP_BAD_FLAGS;
        info->encapsulation = VTEP_ENCAP_VXLAN;
        info->vni = vtep_vxlan_vni(vx);
        info->flow_id = 0;
        info->source_port = vtep_get_be16(&udp->source);
        inner = l4 + VTEP_UDP_HLEN + VTEP_VXLAN_HLEN;
        l4_len -= VTEP_UDP_HLEN + VTEP_VXLAN_HLEN;
    } else {
        const struct vtep_nvgre_hdr *gre = (const void *)l4;
        if (l4_len < 4)
            return VTEP_DROP_RUNT;
        if (vtep_get_be16(&gre->protocol) != VTEP_ETH_P_TEB)
            return VTEP_DROP_NOT_TUNNEL;
        if (vtep_get_be16(&gre->flags_ver) != VTEP_GRE_FLAG_K)
            return VTEP_DROP_BAD_FLAGS;
        if (l4_len < VTEP_NVGRE_HLEN)
            return VTEP_DROP_RUNT;
        info->encapsulation = VTEP_ENCAP_NVGRE;
        info->vni = vtep_nvgre_vsid(gre);
        info->flow_id = vtep_nvgre_flow_id(gre);
        info->source_port = 0;
        inner = l4 + VTEP_NVGRE_HLEN;
        l4_len -= VTEP_NVGRE_HLEN;
    }
    if (l4_len < VTEP_ETH_HLEN)
        return VTEP_DROP_RUNT;
    info->inner_offset = (uint16_t)(inner - pkt);
    info->inner_len = (uint16_t)l4_len;
    return VTEP_DROP_NONE;
}

#endif
