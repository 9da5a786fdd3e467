/* C-level tests of the fast path core: wire struct layout, the RFC checksum
 * vectors, and one golden VXLAN-over-IPv4 packet checked byte for byte.
 *
 * Checks as in check.h; main() exits 1 if any failed.  Run by
 * `make test-c`. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "csum.h"
#include "gro.h"
#include "offload.h"
#include "tunnel.h"

/* Byte-for-byte equality; prints the first differing offset. */
static void check_bytes(const char *file, int line, const char *what, const uint8_t *got,
                        const uint8_t *want, size_t len)
{
    checks++;
    for (size_t i = 0; i < len; i++) {
        if (got[i] != want[i]) {
            failures++;
            fprintf(stderr, "%s:%d: %s differs at byte %zu: 0x%02x, expected 0x%02x\n", file,
                    line, what, i, got[i], want[i]);
            return;
        }
    }
}
#define CHECK_BYTES(what, got, want, len) check_bytes(__FILE__, __LINE__, what, got, want, len)

/* ---- protocol headers: sizes are static-asserted; check where fields sit. */
static void test_header_layout(void)
{
    CHECK_EQ(sizeof(struct vtep_eth_hdr), 14);
    CHECK_EQ(offsetof(struct vtep_eth_hdr, src), 6);
    CHECK_EQ(offsetof(struct vtep_eth_hdr, type), 12);

    CHECK_EQ(sizeof(struct vtep_vlan_hdr), 4);
    CHECK_EQ(offsetof(struct vtep_vlan_hdr, inner_type), 2);

    CHECK_EQ(sizeof(struct vtep_ipv4_hdr), 20);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, tos), 1);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, tot_len), 2);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, frag_off), 6);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, ttl), 8);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, protocol), 9);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, check), 10);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, saddr), 12);
    CHECK_EQ(offsetof(struct vtep_ipv4_hdr, daddr), 16);

    CHECK_EQ(sizeof(struct vtep_ipv6_hdr), 40);
    CHECK_EQ(offsetof(struct vtep_ipv6_hdr, payload_len), 4);
    CHECK_EQ(offsetof(struct vtep_ipv6_hdr, nexthdr), 6);
    CHECK_EQ(offsetof(struct vtep_ipv6_hdr, hop_limit), 7);
    CHECK_EQ(offsetof(struct vtep_ipv6_hdr, saddr), 8);
    CHECK_EQ(offsetof(struct vtep_ipv6_hdr, daddr), 24);

    CHECK_EQ(sizeof(struct vtep_udp_hdr), 8);
    CHECK_EQ(offsetof(struct vtep_udp_hdr, dest), 2);
    CHECK_EQ(offsetof(struct vtep_udp_hdr, len), 4);
    CHECK_EQ(offsetof(struct vtep_udp_hdr, check), 6);

    CHECK_EQ(sizeof(struct vtep_vxlan_hdr), 8);
    CHECK_EQ(offsetof(struct vtep_vxlan_hdr, vni), 4);
    CHECK_EQ(offsetof(struct vtep_vxlan_hdr, reserved2), 7);

    CHECK_EQ(sizeof(struct vtep_nvgre_hdr), 8);
    CHECK_EQ(offsetof(struct vtep_nvgre_hdr, protocol), 2);
    CHECK_EQ(offsetof(struct vtep_nvgre_hdr, key), 4);

    /* The accessors read the bits the RFC diagrams put there. */
    struct vtep_ipv4_hdr ip = {.ver_ihl = 0x46};
    CHECK_EQ(vtep_ipv4_version(&ip), 4);
    CHECK_EQ(vtep_ipv4_hlen(&ip), 24);
    uint8_t ip6[40] = {0x6a, 0xbc, 0xde, 0xf0};  /* version 6, traffic class 0xab */
    CHECK_EQ(vtep_ipv6_version((const void *)ip6), 6);
    CHECK_EQ(vtep_ipv6_tclass((const void *)ip6), 0xab);
    struct vtep_nvgre_hdr gre;
    vtep_nvgre_set_key(&gre, 0xabcdef, 0x42);
    CHECK(memcmp(gre.key, "\xab\xcd\xef\x42", 4) == 0);
    CHECK_EQ(vtep_nvgre_vsid(&gre), 0xabcdef);
    CHECK_EQ(vtep_nvgre_flow_id(&gre), 0x42);
    struct vtep_vxlan_hdr vx = {0};
    vtep_vxlan_set_vni(&vx, 0x123456);
    CHECK(memcmp(vx.vni, "\x12\x34\x56", 3) == 0);
    CHECK_EQ(vtep_vxlan_vni(&vx), 0x123456);
}

/* ---- RFC 1071 section 3: the worked example of the Internet checksum. */
static void test_rfc1071(void)
{
    static const uint8_t data[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    /* "sum" (one's complement, before the final complement) is 0xddf2. */
    CHECK_EQ(vtep_csum_fold(vtep_csum_add(0, data, sizeof data)), 0xddf2);
    CHECK_EQ(vtep_checksum(data, sizeof data), 0x220d);
    /* An odd trailing byte is padded with zero on the right (RFC 1071 4.1). */
    static const uint8_t odd[3] = {0x12, 0x34, 0x56};
    CHECK_EQ(vtep_checksum(odd, sizeof odd), (uint16_t)~(0x1234 + 0x5600));
    /* Data that includes its own correct checksum sums to 0xffff. */
    uint8_t with_sum[10];
    memcpy(with_sum, data, 8);
    with_sum[8] = 0x22;
    with_sum[9] = 0x0d;
    CHECK_EQ(vtep_checksum(with_sum, sizeof with_sum), 0);
}

/* ---- RFC 1624 section 4: eqn. 3 gives 0x0000 where eqn. 2 gave 0xFFFF. */
static void test_rfc1624(void)
{
    CHECK_EQ(vtep_checksum_update(0xdd2f, 0x5555, 0x3285), 0x0000);
    /* And it agrees with recomputing from scratch on the RFC 1071 data. */
    uint8_t data[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    uint16_t before = vtep_checksum(data, sizeof data);
    data[2] = 0x12;
    data[3] = 0x34;
    CHECK_EQ(vtep_checksum_update(before, 0xf203, 0x1234), vtep_checksum(data, sizeof data));
}

/* ---- Golden VXLAN over IPv4. */

/* The fixed 60-byte inner frame: Ethernet / IPv4 / UDP / 18 bytes of text,
 * built with scapy:
 *   Ether(dst="02:00:00:00:00:0b", src="02:00:00:00:00:0a")
 *   / IP(src="192.0.2.1", dst="192.0.2.2", tos=0xb8, id=1, ttl=64)
 *   / UDP(sport=1000, dport=2000) / Raw(b"vtep-golden-frame!") */
static const uint8_t inner_frame[60] = {
    /* Ethernet: dst 02:00:00:00:00:0b, src 02:00:00:00:00:0a, type IPv4 */
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x00,
    /* IPv4: 0x45, tos 0xb8 (DSCP 46 EF), len 46, id 1, no flags, ttl 64,
     * proto UDP, checksum 0xf602, 192.0.2.1 -> 192.0.2.2 */
    0x45, 0xb8, 0x00, 0x2e, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xf6, 0x02,
    0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00, 0x02, 0x02,
    /* UDP: 1000 -> 2000, len 26, checksum 0xf7b1 */
    0x03, 0xe8, 0x07, 0xd0, 0x00, 0x1a, 0xf7, 0xb1,
    /* "vtep-golden-frame!" */
    'v', 't', 'e', 'p', '-', 'g', 'o', 'l', 'd', 'e', 'n', '-', 'f', 'r', 'a', 'm', 'e', '!',
};

/* inner_frame encapsulated with VNI 5000 from 198.18.0.1 to 198.18.0.2,
 * default settings (UDP checksum off, TTL 64, ports 49152-65535).  Built
 * with scapy, independently of our code:
 *   Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
 *   / IP(src="198.18.0.1", dst="198.18.0.2", tos=0xb8, id=0, flags="DF", ttl=64)
 *   / UDP(sport=55347, dport=4789, chksum=0) / VXLAN(flags=0x08, vni=5000) / inner
 * The source port is 49152 + (hash * 16384 >> 32) with hash = 0x60cf55ec,
 * the flow hash of inner_frame worked out by a Python transcription of
 * vtep_flow_hash_inline (MACs, type, addresses, protocol, ports). */
static const uint8_t golden_vxlan4[110] = {
    /* outer Ethernet: dst 02:00:00:00:00:02 (next hop), src 02:00:00:00:00:01, IPv4 */
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
    /* outer IPv4 (offset 14): 0x45, tos 0xb8 copied from the inner DSCP,
     * total length 96, id 0, DF, ttl 64, proto 17, checksum 0xadad,
     * 198.18.0.1 -> 198.18.0.2 */
    0x45, 0xb8, 0x00, 0x60, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xad, 0xad,
    0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,
    /* UDP (offset 34): 55347 -> 4789, length 76, checksum 0 (none) */
    0xd8, 0x33, 0x12, 0xb5, 0x00, 0x4c, 0x00, 0x00,
    /* VXLAN (offset 42): flags I, reserved, VNI 5000 = 0x001388, reserved */
    0x08, 0x00, 0x00, 0x00, 0x00, 0x13, 0x88, 0x00,
    /* inner frame (offset 50): the 60 bytes above */
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x00,
    0x45, 0xb8, 0x00, 0x2e, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xf6, 0x02,
    0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00, 0x02, 0x02,
    0x03, 0xe8, 0x07, 0xd0, 0x00, 0x1a, 0xf7, 0xb1,
    'v', 't', 'e', 'p', '-', 'g', 'o', 'l', 'd', 'e', 'n', '-', 'f', 'r', 'a', 'm', 'e', '!',
};

/* With udp_checksum set, only the UDP checksum (bytes 40-41) changes; scapy
 * computes it as 0x704c. */
enum { GOLDEN_UDP_CHECK_OFF = 40, GOLDEN_UDP_CHECK = 0x704c };

static void tunnel_params(vtep_tunnel_params_t *p)
{
    static const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
    static const uint8_t dst_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
    memset(p, 0, sizeof *p);
    p->encapsulation = VTEP_ENCAP_VXLAN;
    p->local.family = 4;
    memcpy(p->local.bytes, "\xc6\x12\x00\x01", 4);  /* 198.18.0.1 */
    p->remote.family = 4;
    memcpy(p->remote.bytes, "\xc6\x12\x00\x02", 4); /* 198.18.0.2 */
    memcpy(p->src_mac, src_mac, 6);
    memcpy(p->dst_mac, dst_mac, 6);
    p->destination_port = 4789;
    p->port_min = 49152;
    p->port_max = 65535;
    p->ttl = 64;
}

static void test_golden_vxlan4(void)
{
    vtep_tunnel_params_t p;
    vtep_tunnel_t t;
    uint8_t out[256];
    tunnel_params(&p);
    CHECK_EQ(vtep_tunnel_init(&t, &p), 0);
    CHECK_EQ(t.len, 50);
    CHECK_EQ(vtep_flow_hash(inner_frame, sizeof inner_frame), 0x60cf55ec);

    int n = vtep_encap(&t, 5000, inner_frame, sizeof inner_frame, out, sizeof out);
    CHECK_EQ(n, sizeof golden_vxlan4);
    if (n == (int)sizeof golden_vxlan4)
        CHECK_BYTES("VXLAN/IPv4 golden packet", out, golden_vxlan4, sizeof golden_vxlan4);

    /* The golden packet's own IPv4 header checksum is valid. */
    CHECK_EQ(vtep_checksum(golden_vxlan4 + 14, 20), 0);

    /* UDP checksum on: the same bytes but for the checksum. */
    p.udp_checksum = 1;
    CHECK_EQ(vtep_tunnel_init(&t, &p), 0);
    n = vtep_encap(&t, 5000, inner_frame, sizeof inner_frame, out, sizeof out);
    CHECK_EQ(n, sizeof golden_vxlan4);
    CHECK_EQ(vtep_get_be16(out + GOLDEN_UDP_CHECK_OFF), GOLDEN_UDP_CHECK);
    out[GOLDEN_UDP_CHECK_OFF] = out[GOLDEN_UDP_CHECK_OFF + 1] = 0;
    CHECK_BYTES("VXLAN/IPv4 with UDP checksum, checksum cleared", out, golden_vxlan4,
                sizeof golden_vxlan4);

    /* Too little room, a runt frame, a VNI over 24 bits. */
    tunnel_params(&p);
    CHECK_EQ(vtep_tunnel_init(&t, &p), 0);
    CHECK(vtep_encap(&t, 5000, inner_frame, sizeof inner_frame, out, 109) < 0);
    CHECK(vtep_encap(&t, 5000, inner_frame, 13, out, sizeof out) < 0);
    CHECK(vtep_encap(&t, 1u << 24, inner_frame, sizeof inner_frame, out, sizeof out) < 0);

    /* Invalid templates: mixed families, TTL 0, empty port range. */
    tunnel_params(&p);
    p.remote.family = 6;
    CHECK(vtep_tunnel_init(&t, &p) < 0);
    tunnel_params(&p);
    p.ttl = 0;
    CHECK(vtep_tunnel_init(&t, &p) < 0);
    tunnel_params(&p);
    p.port_min = 2;
    p.port_max = 1;
    CHECK(vtep_tunnel_init(&t, &p) < 0);
}

static void test_decap_golden(void)
{
    vtep_decap_info_t info;
    CHECK_EQ(vtep_decap(golden_vxlan4, sizeof golden_vxlan4, 4789, 0, &info), VTEP_DROP_NONE);
    CHECK_EQ(info.encapsulation, VTEP_ENCAP_VXLAN);
    CHECK_EQ(info.vni, 5000);
    CHECK_EQ(info.inner_offset, 50);
    CHECK_EQ(info.inner_len, sizeof inner_frame);
    CHECK_BYTES("decapsulated frame", golden_vxlan4 + info.inner_offset, inner_frame,
                sizeof inner_frame);
    CHECK_EQ(info.source_port, 55347);
    CHECK_EQ(info.tos, 0xb8);
    CHECK_EQ(info.ttl, 64);
    CHECK_EQ(info.src.family, 4);
    CHECK(memcmp(info.src.bytes, "\xc6\x12\x00\x01", 4) == 0);
    CHECK(memcmp(info.dst.bytes, "\xc6\x12\x00\x02", 4) == 0);

    /* Ethernet padding after the IP packet is not part of the inner frame. */
    uint8_t padded[sizeof golden_vxlan4 + 4] = {0};
    memcpy(padded, golden_vxlan4, sizeof golden_vxlan4);
    CHECK_EQ(vtep_decap(padded, sizeof padded, 4789, 0, &info), VTEP_DROP_NONE);
    CHECK_EQ(info.inner_len, sizeof inner_frame);

    /* A few strict-receive cases on the same bytes. */
    uint8_t pkt[sizeof golden_vxlan4];
    CHECK_EQ(vtep_decap(golden_vxlan4, sizeof golden_vxlan4, 8472, 0, &info), VTEP_DROP_NOT_TUNNEL);
    CHECK_EQ(vtep_decap(golden_vxlan4, 13, 4789, 0, &info), VTEP_DROP_RUNT);
    CHECK_EQ(vtep_decap(golden_vxlan4, sizeof golden_vxlan4 - 1, 4789, 0, &info), VTEP_DROP_BAD_HEADER);
    memcpy(pkt, golden_vxlan4, sizeof pkt);
    pkt[42] = 0x0c;  /* a reserved VXLAN flag next to I */
    CHECK_EQ(vtep_decap(pkt, sizeof pkt, 4789, 0, &info), VTEP_DROP_BAD_FLAGS);
    memcpy(pkt, golden_vxlan4, sizeof pkt);
    pkt[22] = 63;    /* TTL changed, IPv4 checksum not updated */
    CHECK_EQ(vtep_decap(pkt, sizeof pkt, 4789, 0, &info), VTEP_DROP_BAD_CHECKSUM);

    /* Cut short at every length, each copy in a buffer of exactly that size
     * (so valgrind or ASan would see a read past the end): a runt until the
     * IPv4 header is whole (14 + 20 bytes), then bad_header because the
     * total length claims more than is there. */
    for (size_t n = 0; n < sizeof golden_vxlan4; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        if (!cut)
            abort();
        memcpy(cut, golden_vxlan4, n);
        vtep_drop_t want = n < 34 ? VTEP_DROP_RUNT : VTEP_DROP_BAD_HEADER;
        vtep_drop_t got = vtep_decap(cut, n, 4789, 0, &info);
        if (got != want)
            fprintf(stderr, "  (truncated to %zu bytes)\n", n);
        CHECK_EQ(got, want);
        /* The flow hash reads only what it is given, too. */
        (void)vtep_flow_hash(cut, n);
        free(cut);
    }

    /* Drop reasons have their counter names. */
    CHECK(strcmp(vtep_drop_name(VTEP_DROP_NONE), "none") == 0);
    CHECK(strcmp(vtep_drop_name(VTEP_DROP_RUNT), "runt") == 0);
    CHECK(strcmp(vtep_drop_name(VTEP_DROP_RING_FULL), "ring_full") == 0);
    CHECK(strcmp(vtep_drop_name(VTEP_DROP_COUNT), "?") == 0);
    CHECK(strcmp(vtep_drop_name(-1), "?") == 0);
}


/* ---- receive coalescing (gro.h): segments as a TSO cut makes them. */

enum { SEG_MSS = 1000, SEG_HDR = 14 + 20 + 32, SEG_MAX = SEG_HDR + SEG_MSS + 1 };

/* A TCP/IPv4 segment of "payload" bytes at "seq" (timestamps option, ACK
 * and "flags"), both checksums right; its length. */
static uint32_t tcp4_segment(uint8_t *f, uint32_t seq, uint32_t payload, uint8_t flags, uint16_t ip_id)
{
    static const uint8_t eth[14] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00};
    static const uint8_t opts[12] = {1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9};
    uint8_t *ip = f + 14, *th = ip + 20;
    memset(f, 0, SEG_HDR);
    memcpy(f, eth, 14);
    ip[0] = 0x45;
    vtep_put_be16(ip + 2, (uint16_t)(20 + 32 + payload));
    vtep_put_be16(ip + 4, ip_id);
    vtep_put_be16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    memcpy(ip + 12, "\xc0\x00\x02\x01\xc0\x00\x02\x02", 8);
    vtep_put_be16(ip + 10, (uint16_t)~vtep_csum_fold(vtep_csum_add(0, ip, 20)));
    vtep_put_be16(th, 40000);
    vtep_put_be16(th + 2, 5201);
    vtep_put_be32(th + 4, seq);
    vtep_put_be32(th + 8, 777);
    th[12] = 8 << 4;
    th[13] = 0x10 | flags;
    vtep_put_be16(th + 14, 512);
    memcpy(th + 20, opts, sizeof opts);
    for (uint32_t i = 0; i < payload; i++)
        th[32 + i] = (uint8_t)(seq + i);
    uint64_t sum = vtep_csum_add(0, ip + 12, 8) + 6 + 32 + payload;
    vtep_put_be16(th + 16, (uint16_t)~vtep_csum_fold(vtep_csum_add(sum, th, 32 + payload)));
    return SEG_HDR + payload;
}

static void test_gro(void)
{
    static uint8_t f[4][SEG_MAX];
    vtep_gro_seg_t s[4];
    uint32_t len[4];
    for (int i = 0; i < 3; i++)
        len[i] = tcp4_segment(f[i], 5000 + i * SEG_MSS, SEG_MSS, i == 2 ? 0x08 : 0, (uint16_t)(100 + i));
    for (int i = 0; i < 3; i++)
        CHECK(vtep_gro_parse(f[i], len[i], &s[i]));
    CHECK_EQ(s[0].hdr_len, SEG_HDR);
    CHECK_EQ(s[0].payload_len, SEG_MSS);
    CHECK_EQ(s[1].seq, 5000 + SEG_MSS);
    CHECK(!s[0].psh && s[2].psh);
    CHECK(vtep_gro_follows(&s[0], &s[0], &s[1], SEG_MSS));
    CHECK(vtep_gro_follows(&s[0], &s[1], &s[2], 2 * SEG_MSS));
    CHECK(!vtep_gro_follows(&s[0], &s[0], &s[2], SEG_MSS));   /* a gap: seq 7000 after 5000 + 1000 */
    CHECK(!vtep_gro_follows(&s[0], &s[2], &s[1], 2 * SEG_MSS)); /* nothing after PSH */

    struct vtep_vnet_hdr vnet;
    uint8_t hdr[SEG_HDR];
    vtep_gro_headers(&s[0], &s[2], 3 * SEG_MSS, &vnet, hdr);
    CHECK_EQ(vnet.flags, VTEP_VNET_NEEDS_CSUM);
    CHECK_EQ(vnet.gso_type, VTEP_GSO_TCPV4);
    CHECK_EQ(vnet.hdr_len, SEG_HDR);
    CHECK_EQ(vnet.gso_size, SEG_MSS);
    CHECK_EQ(vnet.csum_start, 34);
    CHECK_EQ(vnet.csum_offset, 16);
    CHECK_EQ(vtep_get_be16(hdr + 16), 20 + 32 + 3 * SEG_MSS);          /* IPv4 total length */
    CHECK_EQ(vtep_csum_fold(vtep_csum_add(0, hdr + 14, 20)), 0xffff);   /* its header checksum */
    CHECK_EQ(vtep_get_be32(hdr + 38), 5000);                            /* the first's sequence */
    CHECK_EQ(hdr[47], 0x18);                                            /* ACK, and the last's PSH */
    /* The TCP checksum holds the pseudo-header sum of the whole: the super-frame's
     * bytes with it sum to what a finished checksum would make right. */
    uint64_t pseudo = vtep_csum_add(0, hdr + 26, 8) + 6 + 32 + 3 * SEG_MSS;
    CHECK_EQ(vtep_get_be16(hdr + 50), vtep_csum_fold(pseudo));
    CHECK_BYTES("options", hdr + 54, f[0] + 54, 12);

    /* What must not join, or not be taken at all. */
    memcpy(f[3], f[1], len[1]);
    f[3][SEG_HDR + 5] ^= 1;                                  /* a corrupted payload */
    CHECK(!vtep_gro_parse(f[3], len[1], &s[3]));
    len[3] = tcp4_segment(f[3], 5000 + SEG_MSS, SEG_MSS, 0x01, 101);   /* FIN */
    CHECK(!vtep_gro_parse(f[3], len[3], &s[3]));
    len[3] = tcp4_segment(f[3], 5000 + SEG_MSS, 0, 0, 101);            /* a bare ACK */
    CHECK(!vtep_gro_parse(f[3], len[3], &s[3]));
    len[3] = tcp4_segment(f[3], 5000 + SEG_MSS, SEG_MSS, 0, 101);
    vtep_put_be16(f[3] + 34 + 2, 5202);                      /* another flow (checksum redone) */
    vtep_put_be16(f[3] + 34 + 16, vtep_csum_update16(vtep_get_be16(f[3] + 34 + 16), 5201, 5202));
    CHECK(vtep_gro_parse(f[3], len[3], &s[3]));
    CHECK(!vtep_gro_follows(&s[0], &s[0], &s[3], SEG_MSS));
    len[3] = tcp4_segment(f[3], 5000 + SEG_MSS, SEG_MSS, 0, 101);
    f[3][34 + 24] ^= 1;                                      /* another timestamp */
    vtep_put_be16(f[3] + 34 + 16, vtep_csum_update16(vtep_get_be16(f[3] + 34 + 16),
                                                     vtep_get_be16(f[1] + 34 + 24), vtep_get_be16(f[3] + 34 + 24)));
    CHECK(vtep_gro_parse(f[3], len[3], &s[3]));
    CHECK(!vtep_gro_follows(&s[0], &s[0], &s[3], SEG_MSS));
    len[3] = tcp4_segment(f[3], 5000 + SEG_MSS, SEG_MSS / 2, 0, 101);   /* a short segment joins ... */
    CHECK(vtep_gro_parse(f[3], len[3], &s[3]));
    CHECK(vtep_gro_follows(&s[0], &s[0], &s[3], SEG_MSS));
    len[2] = tcp4_segment(f[2], 5000 + SEG_MSS + SEG_MSS / 2, SEG_MSS, 0, 102);
    CHECK(vtep_gro_parse(f[2], len[2], &s[2]));
    CHECK(!vtep_gro_follows(&s[0], &s[3], &s[2], SEG_MSS + SEG_MSS / 2));  /* ... but ends the run */
    len[3] = tcp4_segment(f[3], 5000 + SEG_MSS, SEG_MSS + 1, 0, 101);
    CHECK(vtep_gro_parse(f[3], len[3], &s[3]));
    CHECK(!vtep_gro_follows(&s[0], &s[0], &s[3], SEG_MSS));             /* longer than the first */
    CHECK(!vtep_gro_parse(f[0], 40, &s[3]));                  /* truncated */
    f[0][14] = 0x46;                                          /* IP options */
    CHECK(!vtep_gro_parse(f[0], len[0], &s[3]));
}

/* ---- tunnel super-packets (offload.h): what the kernel or a receiving
 * vtep cuts them into is, datagram for datagram, what vtep_gso_segment
 * would have sent. */

enum { PACK_MSS = 1000, PACK_SEGS = 62, PACK_PAYLOAD = (PACK_SEGS - 1) * PACK_MSS + 300,
       PACK_DGRAM = 8 + SEG_HDR + PACK_MSS, PACK_ROOM = 70000 };

struct packed {
    uint8_t buf[2][PACK_ROOM];
    uint32_t len[2];
    struct vtep_vnet_hdr vnet[2];
    int n;
};

static int keep_packed(void *ctx, const struct iovec *iov, int n)
{
    struct packed *p = ctx;
    if (p->n == 2 || iov[0].iov_len != VTEP_VNET_HDR_LEN)
        return -1;
    memcpy(&p->vnet[p->n], iov[0].iov_base, VTEP_VNET_HDR_LEN);
    uint32_t len = 0;
    for (int i = 1; i < n; i++) {
        memcpy(p->buf[p->n] + len, iov[i].iov_base, iov[i].iov_len);
        len += (uint32_t)iov[i].iov_len;
    }
    p->len[p->n++] = len;
    return 0;
}

struct segments {
    uint8_t buf[PACK_SEGS][SEG_HDR + 50 + PACK_MSS];
    uint32_t len[PACK_SEGS];
    int n;
};

static int keep_segment(void *ctx, const uint8_t *h, uint32_t h_len, const uint8_t *payload, uint32_t n)
{
    struct segments *s = ctx;
    if (s->n == PACK_SEGS)
        return -1;
    memcpy(s->buf[s->n], h, h_len);
    memcpy(s->buf[s->n] + h_len, payload, n);
    s->len[s->n++] = h_len + n;
    return 0;
}

static void test_gso_pack(void)
{
    static uint8_t frame[SEG_HDR + PACK_PAYLOAD], split[PACK_ROOM + 128 * 42], out[PACK_ROOM];
    static struct packed packed;
    static struct segments want;
    static vtep_pkt_t pkts[128];
    vtep_tunnel_params_t params;
    vtep_tunnel_t t;
    uint32_t len = tcp4_segment(frame, 5000, PACK_PAYLOAD, 0x08, 100);
    tunnel_params(&params);
    CHECK_EQ(vtep_tunnel_init(&t, &params), 0);
    /* The pipeline's outer headers: vtep_encap's, without the frame. */
    CHECK_EQ(vtep_encap(&t, 5000, frame, len, out, sizeof out), 50 + len);
    uint32_t outer_len = t.len;
    CHECK_EQ(vtep_gso_segment(out, outer_len, frame, len, SEG_HDR, PACK_MSS, keep_segment, &want), PACK_SEGS);

    /* 62 datagrams of 1074 bytes: 60 fill one super-packet's 64 KB, 2 go in the next. */
    CHECK_EQ(vtep_gso_pack(out, outer_len, frame, len, SEG_HDR, PACK_MSS, keep_packed, &packed), 2);
    CHECK_EQ(packed.n, 2);
    for (int i = 0; i < packed.n; i++) {
        const struct vtep_vnet_hdr *v = &packed.vnet[i];
        const uint8_t *b = packed.buf[i];
        CHECK_EQ(v->flags, VTEP_VNET_NEEDS_CSUM);
        CHECK_EQ(v->gso_type, VTEP_GSO_UDP_L4);
        CHECK_EQ(v->gso_size, PACK_DGRAM);
        CHECK_EQ(v->hdr_len, 42);
        CHECK_EQ(v->csum_start, 34);
        CHECK_EQ(v->csum_offset, 6);
        uint32_t udp_len = packed.len[i] - 34;
        CHECK_EQ(udp_len, 8 + (i ? 2 : 60) * PACK_DGRAM - (i ? PACK_MSS - 300 : 0));
        CHECK_EQ(vtep_get_be16(b + 16), 20 + udp_len);                  /* IPv4 total length */
        CHECK_EQ(vtep_csum_fold(vtep_csum_add(0, b + 14, 20)), 0xffff);  /* its header checksum */
        CHECK_EQ(vtep_get_be16(b + 38), udp_len);
        /* The UDP checksum holds the pseudo-header sum, for whoever cuts it. */
        CHECK_EQ(vtep_get_be16(b + 40), vtep_csum_fold(vtep_csum_add(0, b + 26, 8) + 17 + udp_len));
    }

    /* Cut again, the datagrams are the segments vtep_gso_segment makes, but
     * for the IPv4 ID and checksums the cutter sets. */
    int k = 0;
    for (int i = 0; i < packed.n; i++) {
        uint32_t n = vtep_udp_split(packed.buf[i], packed.len[i], packed.vnet[i].gso_size, split, sizeof split,
                                    pkts, 128);
        CHECK_EQ(n, i ? 2 : 60);
        for (uint32_t j = 0; j < n && k < PACK_SEGS; j++, k++) {
            const uint8_t *d = pkts[j].data;
            CHECK_EQ(pkts[j].len, want.len[k]);
            CHECK_EQ(pkts[j].flags, VTEP_PKT_CSUM_OK);
            CHECK_EQ(vtep_csum_fold(vtep_csum_add(0, d + 14, 20)), 0xffff);
            CHECK_BYTES("Ethernet, IPv4 length", d, want.buf[k], 18);
            CHECK_BYTES("IPv4 flags to protocol", d + 20, want.buf[k] + 20, 4);
            CHECK_BYTES("addresses, UDP ports and length", d + 26, want.buf[k] + 26, 14);
            CHECK_BYTES("VXLAN and the segment", d + 42, want.buf[k] + 42, want.len[k] - 42);
        }
    }
    CHECK_EQ(k, PACK_SEGS);

    /* Refused: no room for every datagram, no segment size, GRE outside. */
    CHECK_EQ(vtep_udp_split(packed.buf[0], packed.len[0], PACK_DGRAM, split, sizeof split, pkts, 59), 0);
    CHECK_EQ(vtep_udp_split(packed.buf[0], packed.len[0], PACK_DGRAM, split, 60000, pkts, 128), 0);
    CHECK_EQ(vtep_udp_split(packed.buf[0], packed.len[0], 0, split, sizeof split, pkts, 128), 0);
    params.encapsulation = VTEP_ENCAP_NVGRE;
    CHECK_EQ(vtep_tunnel_init(&t, &params), 0);
    CHECK_EQ(vtep_encap(&t, 5000, frame, len, out, sizeof out), 42 + len);
    CHECK_EQ(vtep_gso_pack(out, t.len, frame, len, SEG_HDR, PACK_MSS, keep_packed, &packed), -EPROTONOSUPPORT);
}

int main(void)
{
    test_header_layout();
    test_rfc1071();
    test_rfc1624();
    test_golden_vxlan4();
    test_decap_golden();
    test_gro();
    test_gso_pack();
    return check_summary("test_c");
}
