/* Checksum completion and software segmentation: see offload.h. */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
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

/* A super-frame being cut into segments. */
struct cut {
    const uint8_t *frame;
    uint32_t hdr_len, gso_size;
    uint32_t payload;         /* bytes after the headers */
    struct l4_at r;
    uint32_t seq;             /* TCP: the first segment's */
    uint16_t id;              /* IPv4: the first segment's */
    uint8_t flags;            /* TCP: the super-frame's */
};

/* The longest headers a segment may have: Ethernet, IPv4 and TCP with
 * options. */
enum { CUT_HDR_MAX = VTEP_ETH_HLEN + 60 + 60 };

static int cut_start(struct cut *c, const uint8_t *frame, uint32_t len, uint32_t hdr_len, uint32_t gso_size)
{
    if (hdr_len >= len || hdr_len > CUT_HDR_MAX || !gso_size)
        return 0;
    /* The headers must hold a whole TCP/UDP header: its fields are rewritten per segment. */
    if (!find_l4(frame, len, 1, &c->r) || hdr_len < c->r.l4 + l4_min(&c->r))
        return 0;
    int tcp = c->r.proto == VTEP_IPPROTO_TCP;
    c->frame = frame;
    c->hdr_len = hdr_len;
    c->gso_size = gso_size;
    c->payload = len - hdr_len;
    c->seq = tcp ? vtep_get_be32(frame + c->r.l4 + 4) : 0;
    c->id = c->r.ipv6 ? 0 : vtep_get_be16(frame + c->r.l3 + 4);
    c->flags = tcp ? frame[c->r.l4 + 13] : 0;
    return 1;
}

static uint32_t cut_count(const struct cut *c)
{
    return (c->payload + c->gso_size - 1) / c->gso_size;
}

/* Segment "n": its headers in "in" (which holds a copy of the
 * super-frame's), with lengths, IPv4 ID, TCP sequence number and flags, and
 * checksum set.  Returns its payload's length, and in "*data_sum" that
 * payload's sum. */
static uint32_t cut_segment(const struct cut *c, uint32_t n, uint8_t *in, uint64_t *data_sum)
{
    const struct l4_at *r = &c->r;
    uint32_t off = n * c->gso_size, ihl = r->l4 - r->l3;
    uint32_t seg = c->payload - off < c->gso_size ? c->payload - off : c->gso_size;
    uint32_t l4_len = c->hdr_len - r->l4 + seg;
    uint8_t *ip = in + r->l3;
    if (r->ipv6) {
        vtep_put_be16(ip + 4, (uint16_t)l4_len);
    } else {
        vtep_put_be16(ip + 2, (uint16_t)(ihl + l4_len));
        vtep_put_be16(ip + 4, (uint16_t)(c->id + n));
        vtep_put_be16(ip + 10, 0);
        vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, ihl)));
    }
    if (r->proto == VTEP_IPPROTO_TCP) {
        vtep_put_be32(in + r->l4 + 4, c->seq + off);
        uint8_t f = c->flags;
        if (off + seg < c->payload)
            f &= (uint8_t)~(TCP_FIN | TCP_PSH);  /* only the last segment ends the push */
        if (off)
            f &= (uint8_t)~TCP_CWR;                /* only the first says the window was cut */
        in[r->l4 + 13] = f;
    } else {
        vtep_put_be16(in + r->l4 + 4, (uint16_t)l4_len);
    }
    uint8_t *check = in + check_at(r);
    *data_sum = vtep_csum_add(0, c->frame + c->hdr_len + off, seg);
    vtep_put_be16(check, 0);
    put_check(check, r->pseudo + l4_len + vtep_csum_add(0, in + r->l4, c->hdr_len - r->l4) + *data_sum);
    return seg;
}

int vtep_gso_segment(const uint8_t *outer, uint32_t outer_len, const uint8_t *frame, uint32_t len,
                     uint32_t hdr_len, uint32_t gso_size, vtep_emit_fn emit, void *ctx)
{
    uint8_t h[VTEP_HDR_ROOM + CUT_HDR_MAX];
    struct cut c;
    if (outer_len > VTEP_HDR_ROOM || !cut_start(&c, frame, len, hdr_len, gso_size))
        return -EINVAL;
    uint8_t *in = h + outer_len;
    if (outer_len)  /* "outer" may be NULL when there is none */
        memcpy(h, outer, outer_len);
    memcpy(in, frame, hdr_len);
    uint32_t n = cut_count(&c);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t data_sum;
        uint32_t seg = cut_segment(&c, k, in, &data_sum);
        if (outer_len)
            fix_outer(h, outer_len, hdr_len + seg, vtep_csum_add(0, in, hdr_len) + data_sum);
        int rc = emit(ctx, h, outer_len + hdr_len, frame + hdr_len + k * gso_size, seg);
        if (rc < 0)
            return rc;
    }
    return (int)n;
}

/* Where the UDP header of outer headers "h" ("len" bytes, from vtep_encap)
 * is, or 0 if they carry no UDP (NVGRE). */
static uint32_t outer_udp_at(const uint8_t *h, uint32_t len)
{
    if (len < VTEP_ETH_HLEN + VTEP_IPV4_HLEN)
        return 0;
    const uint8_t *ip = h + VTEP_ETH_HLEN;
    uint16_t type = vtep_get_be16(h + 12);
    uint32_t at = type == VTEP_ETH_P_IPV4 && ip[9] == VTEP_IPPROTO_UDP ? VTEP_ETH_HLEN + (ip[0] & 0xfu) * 4
                : type == VTEP_ETH_P_IPV6 && len >= VTEP_ETH_HLEN + VTEP_IPV6_HLEN && ip[6] == VTEP_IPPROTO_UDP
                    ? VTEP_ETH_HLEN + VTEP_IPV6_HLEN : 0;
    return at && at + 8 <= len ? at : 0;
}

int vtep_gso_pack(const uint8_t *outer, uint32_t outer_len, const uint8_t *frame, uint32_t len,
                  uint32_t hdr_len, uint32_t gso_size, vtep_emit_iov_fn emit, void *ctx)
{
    uint32_t udp = outer_udp_at(outer, outer_len);
    struct cut c;
    if (!udp)
        return -EPROTONOSUPPORT;
    if (outer_len > VTEP_HDR_ROOM || !cut_start(&c, frame, len, hdr_len, gso_size))
        return -EINVAL;
    /* Each datagram repeats what follows the UDP header (VXLAN's), then
     * the segment with its own headers. */
    uint32_t tunnel_len = outer_len - udp - 8, seg_hdr = tunnel_len + hdr_len;
    uint32_t full = seg_hdr + (c.payload < gso_size ? c.payload : gso_size);  /* the longest datagram */
    int ipv6 = vtep_get_be16(outer + 12) == VTEP_ETH_P_IPV6;
    /* The IP length field bounds a super-packet: IPv4's counts its header. */
    uint32_t room = 65535 - 8 - (ipv6 ? 0 : udp - VTEP_ETH_HLEN);
    uint32_t per = room / full < VTEP_PACK_MAX_SEGS ? room / full : VTEP_PACK_MAX_SEGS;
    if (!per)
        return -EMSGSIZE;
    uint8_t seg_hdrs[VTEP_PACK_MAX_SEGS][VTEP_HDR_ROOM + CUT_HDR_MAX];
    uint8_t head[VTEP_HDR_ROOM];
    struct vtep_vnet_hdr vnet;
    struct iovec iov[2 + 2 * VTEP_PACK_MAX_SEGS] = {{&vnet, VTEP_VNET_HDR_LEN}, {head, udp + 8}};
    uint32_t n = cut_count(&c), packets = 0;
    memcpy(head, outer, udp + 8);
    for (uint32_t first = 0; first < n; first += per, packets++) {
        uint32_t k = n - first < per ? n - first : per, udp_len = 8;
        for (uint32_t j = 0; j < k; j++) {
            uint8_t *t = seg_hdrs[j];
            uint64_t data_sum;
            memcpy(t, outer + udp + 8, tunnel_len);
            memcpy(t + tunnel_len, frame, hdr_len);
            uint32_t seg = cut_segment(&c, first + j, t + tunnel_len, &data_sum);
            iov[2 + 2 * j] = (struct iovec){t, seg_hdr};
            iov[3 + 2 * j] = (struct iovec){(void *)(frame + hdr_len + (first + j) * gso_size), seg};
            udp_len += seg_hdr + seg;
        }
        uint8_t *ip = head + VTEP_ETH_HLEN;
        uint64_t pseudo;
        if (ipv6) {
            vtep_put_be16(ip + 4, (uint16_t)udp_len);
            pseudo = vtep_csum_add(0, ip + 8, 32);
        } else {
            vtep_put_be16(ip + 2, (uint16_t)(udp - VTEP_ETH_HLEN + udp_len));
            vtep_put_be16(ip + 10, 0);
            vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, udp - VTEP_ETH_HLEN)));
            pseudo = vtep_csum_add(0, ip + 12, 8);
        }
        vtep_put_be16(head + udp + 4, (uint16_t)udp_len);
        /* Left for whoever cuts it (or to the receiver, which trusts a
         * checksum the local kernel vouched for): the pseudo-header sum. */
        vtep_put_be16(head + udp + 6, vtep_csum_fold(pseudo + VTEP_IPPROTO_UDP + udp_len));
        vnet = (struct vtep_vnet_hdr){.flags = VTEP_VNET_NEEDS_CSUM, .gso_type = k > 1 ? VTEP_GSO_UDP_L4 : 0,
                                      .hdr_len = (uint16_t)(udp + 8), .gso_size = k > 1 ? (uint16_t)full : 0,
                                      .csum_start = (uint16_t)udp, .csum_offset = 6};
        int rc = emit(ctx, iov, 2 + 2 * (int)k);
        if (rc < 0)
            return rc;
    }
    return (int)packets;
}

uint32_t vtep_udp_split(const uint8_t *frame, uint32_t len, uint32_t gso_size, uint8_t *out, uint32_t room,
                        vtep_pkt_t *pkts, uint32_t max)
{
    struct l4_at r;
    if (!gso_size || !find_l4(frame, len, 1, &r) || r.proto != VTEP_IPPROTO_UDP)
        return 0;
    uint32_t hdr = r.l4 + 8, payload = len - hdr, n = (payload + gso_size - 1) / gso_size;
    if (!n || n > max || (uint64_t)n * hdr + payload > room)
        return 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t off = k * gso_size, seg = payload - off < gso_size ? payload - off : gso_size;
        uint8_t *ip = out + r.l3;
        memcpy(out, frame, hdr);
        memcpy(out + hdr, frame + hdr + off, seg);
        if (r.ipv6) {
            vtep_put_be16(ip + 4, (uint16_t)(8 + seg));
        } else {
            uint32_t ihl = r.l4 - r.l3;
            vtep_put_be16(ip + 2, (uint16_t)(ihl + 8 + seg));
            vtep_put_be16(ip + 4, (uint16_t)(vtep_get_be16(ip + 4) + k));
            vtep_put_be16(ip + 10, 0);
            vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, ihl)));
        }
        vtep_put_be16(out + r.l4 + 4, (uint16_t)(8 + seg));
        /* The UDP checksum stays as it came: the kernel vouched for the
         * super-packet (it is local, or was checked when it was joined). */
        pkts[k] = (vtep_pkt_t){.data = out, .len = hdr + seg, .flags = VTEP_PKT_CSUM_OK};
        out += hdr + seg;
    }
    return n;
}
