/* Tunnel templates and the single-packet API (vtep_packet.h). */
#include <errno.h>
#include "tunnel.h"

static const char *const drop_names[VTEP_DROP_COUNT] = {
    [VTEP_DROP_NONE] = "none",
#define _(sym, name, help) [VTEP_DROP_##sym] = name,
#include "vtep_error.def"
#undef _
};

const char *vtep_drop_name(int d)
{
    return d >= 0 && d < VTEP_DROP_COUNT ? drop_names[d] : "?";
}

int vtep_tunnel_init(vtep_tunnel_t *t, const vtep_tunnel_params_t *p)
{
    int ipv6 = p->local.family == 6;
    if ((p->local.family != 4 && !ipv6) || p->remote.family != p->local.family || p->ttl == 0
        || p->port_min > p->port_max
        || (p->encapsulation != VTEP_ENCAP_VXLAN && p->encapsulation != VTEP_ENCAP_NVGRE))
        return -EINVAL;

    memset(t, 0, sizeof *t);
    uint8_t *h = t->tmpl;
    struct vtep_eth_hdr *eth = (void *)h;
    memcpy(eth->dst, p->dst_mac, VTEP_ETH_ALEN);
    memcpy(eth->src, p->src_mac, VTEP_ETH_ALEN);
    vtep_put_be16(&eth->type, ipv6 ? VTEP_ETH_P_IPV6 : VTEP_ETH_P_IPV4);

    int vxlan = p->encapsulation == VTEP_ENCAP_VXLAN;
    uint8_t proto = vxlan ? VTEP_IPPROTO_UDP : VTEP_IPPROTO_GRE;
    unsigned ip_len = ipv6 ? VTEP_IPV6_HLEN : VTEP_IPV4_HLEN;
    uint8_t *l4 = h + VTEP_ETH_HLEN + ip_len;
    if (ipv6) {
        struct vtep_ipv6_hdr *ip6 = (void *)(h + VTEP_ETH_HLEN);
        ip6->nexthdr = proto;
        ip6->hop_limit = p->ttl;
        memcpy(ip6->saddr, p->local.bytes, 16);
        memcpy(ip6->daddr, p->remote.bytes, 16);
        t->pseudo_sum = (uint32_t)vtep_csum_fold(vtep_csum_add(proto, ip6->saddr, 32));
    } else {
        struct vtep_ipv4_hdr *ip = (void *)(h + VTEP_ETH_HLEN);
        ip->ver_ihl = 0x45;
        /* DF: the underlay must never fragment; too-big frames are dropped
         * before encapsulation instead.  With DF set the ID may be 0 (RFC 6864). */
        vtep_put_be16(&ip->frag_off, VTEP_IPV4_DF);
        ip->ttl = p->ttl;
        ip->protocol = proto;
        memcpy(ip->saddr, p->local.bytes, 4);
        memcpy(ip->daddr, p->remote.bytes, 4);
        t->ip_sum = vtep_csum_fold(vtep_csum_add(0, ip, VTEP_IPV4_HLEN));
        t->pseudo_sum = (uint32_t)vtep_csum_fold(vtep_csum_add(proto, ip->saddr, 8));
    }
    if (vxlan) {
        struct vtep_udp_hdr *udp = (void *)l4;
        struct vtep_vxlan_hdr *vx = (void *)(l4 + VTEP_UDP_HLEN);
        vtep_put_be16(&udp->dest, p->destination_port);
        vx->flags = VTEP_VXLAN_FLAG_I;
        t->len = (uint8_t)(VTEP_ETH_HLEN + ip_len + VTEP_UDP_HLEN + VTEP_VXLAN_HLEN);
    } else {
        struct vtep_nvgre_hdr *gre = (void *)l4;
        vtep_put_be16(&gre->flags_ver, VTEP_GRE_FLAG_K);
        vtep_put_be16(&gre->protocol, VTEP_ETH_P_TEB);
        t->len = (uint8_t)(VTEP_ETH_HLEN + ip_len + VTEP_NVGRE_HLEN);
    }
    t->family = p->local.family;
    t->encapsulation = (uint8_t)p->encapsulation;
    t->udp_checksum = ipv6 || p->udp_checksum;
    t->port_min = p->port_min;
    t->port_span = (uint32_t)p->port_max - p->port_min + 1;
    return 0;
}

int vtep_encap(const vtep_tunnel_t *t, uint32_t vni, const uint8_t *frame, size_t len,
               uint8_t *out, size_t cap)
{
    uint8_t hdr[VTEP_HDR_ROOM];
    if (len < VTEP_ETH_HLEN || vni > VTEP_VNI_MAX || len > 0xffff - VTEP_OVERHEAD_IPV6)
        return -EINVAL;
    if (cap < t->len + len)
        return -ENOSPC;
    uint32_t hash = vtep_flow_hash_inline(frame, len);
    unsigned hlen = t->family == 6 ? vtep_encap_inline(t, 1, vni, frame, (uint32_t)len, hash, hdr)
                                   : vtep_encap_inline(t, 0, vni, frame, (uint32_t)len, hash, hdr);
    memcpy(out, hdr, hlen);
    memcpy(out + hlen, frame, len);
    return (int)(hlen + len);
}

vtep_drop_t vtep_decap(const uint8_t *pkt, size_t len, uint16_t destination_port, uint32_t flags,
                       vtep_decap_info_t *info)
{
    memset(info, 0, sizeof *info);
    return vtep_decap_inline(pkt, len, destination_port, info, !(flags & VTEP_PKT_CSUM_OK));
}

uint32_t vtep_flow_hash(const uint8_t *frame, size_t len)
{
    return vtep_flow_hash_inline(frame, len);
}

uint16_t vtep_checksum(const uint8_t *data, size_t len)
{
    return (uint16_t)~vtep_csum_fold(vtep_csum_add(0, data, len));
}

uint16_t vtep_checksum_update(uint16_t hc, uint16_t m, uint16_t m_new)
{
    return vtep_csum_update16(hc, m, m_new);
}
