/* Checksum completion and software segmentation: see offload.h. */
#include <errno.h>
#include "csum.h"
#include "eth.h"
#include "ipv4.h"
#include "ipv6.h"
#include "offload.h"
#include "vtep_packet.h"

enum { TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_CWR = 0x80 };

/* Where an Ethernet frame's IP and TCP/UDP headers are. */
struct l4_at {
    uint32_t l3, l4;          /* offsets */
    uint32_t l4_len;          /* TCP/UDP header and payload, as the IP header says */
    uint8_t proto;
    uint8_t ipv6;
    uint64_t pseudo;          /* pseudo-header sum of the addresses and protocol */
};

/* Parse an untagged frame down to its TCP or UDP header; 0 if it is none of
 * those, or a fragment, or has IPv6 extension headers.  The L4 length is
 * the IP header's, or for a GSO super-frame ("super"), all the frame has. */
static int find_l4(const uint8_t *f, uint32_t len, int super, struct l4_at *r)
{
    r->l3 = VTEP_ETH_HLEN;
    if (len < VTEP_ETH_HLEN)
        return 0;
    uint16_t type = vtep_get_be16(f + 12);
    if (type == VTEP_ETH_P_IPV4) {
        const uint8_t *ip = f + r->l3;
        if (len < r->l3 + VTEP_IPV4_HLEN || ip[0] >> 4 != 4 || (ip[0] & 0xf) < 5)
            return 0;
        uint32_t ihl = (ip[0] & 0xf) * 4u, tot = super ? len - r->l3 : vtep_get_be16(ip + 2);
        if (vtep_get_be16(ip + 6) & (VTEP_IPV4_MF | VTEP_IPV4_OFFSET) || tot < ihl || r->l3 + tot > len)
            return 0;
        r->ipv6 = 0;
        r->proto = ip[9];
        r->l4 = r->l3 + ihl;
        r->l4_len = tot - ihl;
        r->pseudo = vtep_csum_add(0, ip + 12, 8) + r->proto;
    } else if (type == VTEP_ETH_P_IPV6) {
        const uint8_t *ip = f + r->l3;
        if (len < r->l3 + VTEP_IPV6_HLEN || ip[0] >> 4 != 6)
            return 0;
        r->ipv6 = 1;
        r->proto = ip[6];
        r->l4 = r->l3 + VTEP_IPV6_HLEN;
        r->l4_len = super ? len - r->l4 : vtep_get_be16(ip + 4);
        if (r->l4 > len || r->l4_len > len - r->l4)
            return 0;
        r->pseudo = vtep_csum_add(0, ip + 8, 32) + r->proto;
    } else {
        return 0;
    }
    uint32_t need = r->proto == VTEP_IPPROTO_TCP ? 20 : r->proto == VTEP_IPPROTO_UDP ? 8 : 0;
    return need && r->l4_len >= need;
}

/* The smallest TCP or UDP header. */
static uint32_t l4_min(const struct l4_at *r)
{
    return r->proto == VTEP_IPPROTO_TCP ? 20 : 8;
}

static uint32_t check_at(const struct l4_at *r)
{
    return r->l4 + (r->proto == VTEP_IPPROTO_TCP ? 16 : 6);
}

/* A computed checksum of 0 goes out as 0xffff, its equal: UDP's 0 means none. */
static void put_check(uint8_t *p, uint64_t sum)
{
    uint16_t c = (uint16_t)~vtep_csum_fold(sum);
    vtep_put_be16(p, c ? c : 0xffff);
}

int vtep_csum_finish(uint8_t *frame, uint32_t len, uint32_t start, uint32_t offset)
{
    /* "offset + 2" could wrap for a 32-bit offset: compare within len - start. */
    if (start >= len || len - start < 2 || offset > len - start - 2)
        return -EINVAL;
    put_check(frame + start + offset, vtep_csum_add(0, frame + start, len - start));
    return 0;
}

void vtep_l4_csum_fill(uint8_t *frame, uint32_t len)
{
    struct l4_at r;
    if (!find_l4(frame, len, 0, &r))
        return;
    uint8_t *check = frame + check_at(&r);
    if (r.proto == VTEP_IPPROTO_UDP && !r.ipv6 && vtep_get_be16(check) == 0)
        return;  /* sent without a checksum */
    vtep_put_be16(check, 0);
    put_check(check, r.pseudo + r.l4_len + vtep_csum_add(0, frame + r.l4, r.l4_len));
}

int vtep_vnet_take(vtep_pkt_t *p, const void *vnet)
{
    struct vtep_vnet_hdr vh;
    uint8_t *data = (uint8_t *)p->data;
    memcpy(&vh, vnet, sizeof vh);
    if (vh.gso_type != VTEP_GSO_NONE) {
        p->gso_hdr_len = (uint16_t)vtep_gso_headers(data, p->len, vh.gso_type);
        p->gso_size = vh.gso_size;
        p->gso_type = vh.gso_type;
        return p->gso_hdr_len && p->gso_size;  /* its checksums are made segment by segment */
    }
    if (vh.flags & VTEP_VNET_NEEDS_CSUM)
        return vtep_csum_finish(data, p->len, vh.csum_start, vh.csum_offset) == 0;
    return 1;
}

uint32_t vtep_gso_headers(const uint8_t *frame, uint32_t len, uint8_t gso_type)
{
    struct l4_at r;
    uint8_t type = gso_type & (uint8_t)~VTEP_VNET_GSO_ECN;
    if (!find_l4(frame, len, 1, &r))
        return 0;
    if (type == VTEP_GSO_TCPV4 ? r.ipv6 || r.proto != VTEP_IPPROTO_TCP
        : type == VTEP_GSO_TCPV6 ? !r.ipv6 || r.proto != VTEP_IPPROTO_TCP
        : type == VTEP_GSO_UDP_L4 ? r.proto != VTEP_IPPROTO_UDP : 1)
        return 0;
    uint32_t l4_hlen = r.proto == VTEP_IPPROTO_TCP ? (frame[r.l4 + 12] >> 4) * 4u : 8;
    if (l4_hlen < l4_min(&r) || l4_hlen >= r.l4_len)
        return 0;  /* a TCP data offset below 5 words, or no payload */
    return r.l4 + l4_hlen;
}

/* Set the outer headers "h" ("outer_len" bytes, built by vtep_encap for
 * some other length) for an inner frame of "inner_len" bytes whose
 * one's complement sum is "inner_sum". */
static void fix_outer(uint8_t *h, uint32_t outer_len, uint32_t inner_len, uint64_t inner_sum)
{
    uint8_t *ip = h + VTEP_ETH_HLEN;
    uint32_t l4, total = outer_len - VTEP_ETH_HLEN + inner_len;
    uint8_t proto;
    uint64_t pseudo;
    if (vtep_get_be16(h + 12) == VTEP_ETH_P_IPV4) {
        l4 = VTEP_ETH_HLEN + (ip[0] & 0xf) * 4u;
        vtep_put_be16(ip + 2, (uint16_t)total);
        vtep_put_be16(ip + 10, 0);
        vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, l4 - VTEP_ETH_HLEN)));
        proto = ip[9];
        pseudo = vtep_csum_add(0, ip + 12, 8);
    } else {
        l4 = VTEP_ETH_HLEN + VTEP_IPV6_HLEN;
        vtep_put_be16(ip + 4, (uint16_t)(total - VTEP_IPV6_HLEN));
        proto = ip[6];
        pseudo = vtep_csum_add(0, ip + 8, 32);
    }
    if (proto != VTEP_IPPROTO_UDP)
        return;  /* GRE: no length, no checksum */
    uint8_t *udp = h + l4;
    uint32_t udp_len = outer_len - l4 + inner_len;
    vtep_put_be16(udp + 4, (uint16_t)udp_len);
    if (vtep_get_be16(udp + 6) == 0)
        return;  /* sent without a UDP checksum */
    vtep_put_be16(udp + 6, 0);
    put_check(udp + 6, pseudo + VTEP_IPPROTO_UDP + udp_len + vtep_csum_add(0, udp, outer_len - l4) + inner_sum);
}

int vtep_gso_segment(const uint8_t *outer, uint32_t outer_len, const uint8_t *frame, uint32_t len,
                     uint32_t hdr_len, uint32_t gso_size, vtep_emit_fn emit, void *ctx)
{
    uint8_t h[VTEP_HDR_ROOM + VTEP_ETH_HLEN + 60 + 60];
    struct l4_at r;
    if (outer_len > VTEP_HDR_ROOM || hdr_len > sizeof h - outer_len || hdr_len >= len || !gso_size)
        return -EINVAL;
    /* The headers must hold a whole TCP/UDP header: its fields are rewritten per segment. */
    if (!find_l4(frame, len, 1, &r) || hdr_len < r.l4 + l4_min(&r))
        return -EINVAL;
    uint8_t *in = h + outer_len;
    if (outer_len)  /* "outer" may be NULL when there is none */
        memcpy(h, outer, outer_len);
    memcpy(in, frame, hdr_len);
    int tcp = r.proto == VTEP_IPPROTO_TCP;
    uint32_t ihl = r.l4 - r.l3, seq = tcp ? vtep_get_be32(in + r.l4 + 4) : 0;
    uint16_t id = r.ipv6 ? 0 : vtep_get_be16(in + r.l3 + 4);
    uint8_t flags = tcp ? in[r.l4 + 13] : 0;
    uint32_t payload = len - hdr_len, n = 0;
    for (uint32_t off = 0; off < payload; off += gso_size, n++) {
        uint32_t seg = payload - off < gso_size ? payload - off : gso_size;
        uint32_t l4_len = hdr_len - r.l4 + seg;
        uint8_t *ip = in + r.l3;
        if (r.ipv6) {
            vtep_put_be16(ip + 4, (uint16_t)l4_len);
        } else {
            vtep_put_be16(ip + 2, (uint16_t)(ihl + l4_len));
            vtep_put_be16(ip + 4, (uint16_t)(id + n));
            vtep_put_be16(ip + 10, 0);
            vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, ihl)));
        }
        if (tcp) {
            vtep_put_be32(in + r.l4 + 4, seq + off);
            uint8_t f = flags;
            if (off + seg < payload)
                f &= (uint8_t)~(TCP_FIN | TCP_PSH);  /* only the last segment ends the push */
            if (off)
                f &= (uint8_t)~TCP_CWR;                /* only the first says the window was cut */
            in[r.l4 + 13] = f;
        } else {
            vtep_put_be16(in + r.l4 + 4, (uint16_t)l4_len);
        }
        uint8_t *check = in + check_at(&r);
        uint64_t data_sum = vtep_csum_add(0, frame + hdr_len + off, seg);
        vtep_put_be16(check, 0);
        put_check(check, r.pseudo + l4_len + vtep_csum_add(0, in + r.l4, hdr_len - r.l4) + data_sum);
        if (outer_len)
            fix_outer(h, outer_len, hdr_len + seg, vtep_csum_add(0, in, hdr_len) + data_sum);
        int rc = emit(ctx, h, outer_len + hdr_len, frame + hdr_len + off, seg);
        if (rc < 0)
            return rc;
    }
    return (int)n;
}
