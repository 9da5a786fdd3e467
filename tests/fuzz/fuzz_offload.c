/* libFuzzer target: offloads on arbitrary frames and parameters.
 *   vtep_csum_finish   succeeds exactly when the checksum fits the frame;
 *   vtep_l4_csum_fill  changes at most the 2 bytes of one checksum, and a
 *                      second pass changes nothing;
 *   vtep_gso_headers + vtep_gso_segment (with no outer headers, or a VXLAN
 *                      or NVGRE tunnel's): every segment lies inside the
 *                      frame, in order, with no more than "gso_size"
 *                      payload bytes, correct checksums inside and out;
 *   vtep_gso_pack + vtep_udp_split (a VXLAN tunnel's headers): the
 *                      datagrams cut from the super-packets are the
 *                      segments vtep_gso_segment makes, but for the outer
 *                      IPv4 ID and checksums;
 *   vtep_udp_split     on any frame: nothing, or datagrams that hold the
 *                      frame's payload in order, each with its headers
 *                      and at most "gso_size" bytes of it;
 *   vtep_gso_segment   with any header length: bounded segments or an error;
 *   vtep_gro_*         (gro.h) on the segments of a TCP super-frame cut with
 *                      no outer headers: when the first is taken, all are,
 *                      each follows the one before, and the joined
 *                      super-frame is the original (but for its lengths and
 *                      checksums), its TCP checksum right once finished.
 *
 * Input: gso_type (1 byte), gso_size (2), outer headers (1: 0 none, 1
 * VXLAN/IPv4, 2 VXLAN/IPv6, 3 NVGRE/IPv4, 4 VXLAN/IPv4 with UDP checksums),
 * csum start (4) and offset (4), a raw header length (1), then the frame. */
#include <errno.h>
#include "csum.h"
#include "fuzz_common.h"
#include "gro.h"
#include "offload.h"
#include "util.h"

static uint32_t outer_headers(uint8_t kind, const uint8_t *frame, size_t len, uint8_t *out)
{
    if (kind == 0 || kind > 4 || len < 14)
        return 0;
    vtep_tunnel_params_t p = {.encapsulation = kind == 3 ? VTEP_ENCAP_NVGRE : VTEP_ENCAP_VXLAN,
                              .src_mac = {2, 0, 0, 0, 0, 1}, .dst_mac = {2, 0, 0, 0, 0, 2},
                              .destination_port = 4789, .port_min = 49152, .port_max = 65535, .ttl = 64,
                              .udp_checksum = kind == 4};
    int family = kind == 2 ? 6 : 4;
    p.local.family = p.remote.family = (uint8_t)family;
    p.local.bytes[0] = p.remote.bytes[0] = family == 4 ? 198 : 0x20;
    p.local.bytes[15] = 1, p.remote.bytes[15] = 2;
    p.local.bytes[3] = 1, p.remote.bytes[3] = 2;
    vtep_tunnel_t t;
    CHECK(vtep_tunnel_init(&t, &p) == 0);
    /* Headers as the pipeline builds them: for the whole frame (vtep_gso_segment fixes the lengths). */
    static uint8_t packet[VTEP_HDR_ROOM + 65536];
    CHECK(vtep_encap(&t, 5000, frame, len, packet, sizeof packet) == (int)(t.len + len));
    memcpy(out, packet, t.len);
    return t.len;
}

static void check_csum_finish(const uint8_t *frame, size_t len, uint32_t start, uint32_t offset)
{
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    memcpy(copy, frame, len);
    int rc = vtep_csum_finish(copy, (uint32_t)len, start, offset);
    CHECK((rc == 0) == ((uint64_t)start + offset + 2 <= len) && (rc == 0 || rc == -EINVAL));
    free(copy);
}

static void check_csum_fill(const uint8_t *frame, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    memcpy(copy, frame, len);
    vtep_l4_csum_fill(copy, (uint32_t)len);
    size_t first = len, last = 0;
    for (size_t i = 0; i < len; i++)
        if (copy[i] != frame[i]) {
            first = first < i ? first : i;
            last = i;
        }
    CHECK(first == len || last - first <= 1);
    CHECK(fuzz_l4_csum_ok(copy, (uint32_t)len));
    free(copy);
}

/* The segments of one cut, each copied whole (headers, then payload). */
struct cut {
    uint8_t *bytes[VTEP_GRO_MAX_SEGS];
    uint32_t len[VTEP_GRO_MAX_SEGS];
    uint32_t n;
};

static int keep_segment(void *ctx, const uint8_t *h, uint32_t h_len, const uint8_t *payload, uint32_t n)
{
    struct cut *c = ctx;
    if (c->n == VTEP_GRO_MAX_SEGS)
        return -ENOBUFS;
    uint8_t *b = malloc(h_len + n);
    CHECK(b);
    memcpy(b, h, h_len);
    memcpy(b + h_len, payload, n);
    c->bytes[c->n] = b;
    c->len[c->n++] = h_len + n;
    return 0;
}

/* What a join may change in headers: the IP lengths and IPv4 checksum, the TCP checksum. */
static void blank_lengths_and_checksums(uint8_t *h, int ipv6, uint32_t l4)
{
    memset(h + 14 + (ipv6 ? 4 : 2), 0, 2);
    if (!ipv6)
        memset(h + 14 + 10, 0, 2);
    memset(h + l4 + 16, 0, 2);
}

/* GSO cut, then GRO join: the super-frame again (see the file comment). */
static void check_gro(const uint8_t *frame, size_t len, uint32_t hdr, uint16_t gso_size)
{
    struct cut c = {.n = 0};
    if (vtep_gso_segment(NULL, 0, frame, (uint32_t)len, hdr, gso_size, keep_segment, &c) <= 0)
        goto out;
    vtep_gro_seg_t segs[VTEP_GRO_MAX_SEGS];
    /* A FIN goes on the last segment, which then ends the run: not this check's case. */
    if (!vtep_gro_parse(c.bytes[0], c.len[0], &segs[0]) || c.bytes[c.n - 1][(segs[0].ipv6 ? 54 : 34) + 13] & 0x01)
        goto out;
    CHECK(segs[0].hdr_len == hdr);
    uint32_t payload = segs[0].payload_len;
    for (uint32_t i = 1; i < c.n; i++) {
        CHECK(vtep_gro_parse(c.bytes[i], c.len[i], &segs[i]));
        CHECK(vtep_gro_follows(&segs[0], &segs[i - 1], &segs[i], payload));
        payload += segs[i].payload_len;
    }
    CHECK(hdr + payload == len);
    struct vtep_vnet_hdr vnet;
    uint8_t *joined = malloc(len);
    CHECK(joined);
    vtep_gro_headers(&segs[0], &segs[c.n - 1], payload, &vnet, joined);
    for (uint32_t i = 0, at = hdr; i < c.n; at += segs[i++].payload_len)
        memcpy(joined + at, segs[i].frame + segs[i].hdr_len, segs[i].payload_len);
    int ipv6 = vtep_get_be16(frame + 12) == 0x86dd;
    uint32_t l4 = ipv6 ? 54 : 34;
    uint8_t a[14 + 60 + 60], b[14 + 60 + 60];
    memcpy(a, frame, hdr);
    memcpy(b, joined, hdr);
    blank_lengths_and_checksums(a, ipv6, l4);
    blank_lengths_and_checksums(b, ipv6, l4);
    CHECK(!memcmp(a, b, hdr));
    CHECK(!memcmp(joined + hdr, frame + hdr, payload));
    CHECK(vnet.gso_size == segs[0].payload_len && vnet.hdr_len == hdr && vnet.csum_start == l4);
    CHECK(vtep_csum_finish(joined, (uint32_t)len, vnet.csum_start, vnet.csum_offset) == 0);
    CHECK(fuzz_l4_csum_ok(joined, (uint32_t)len));
    free(joined);
out:
    for (uint32_t i = 0; i < c.n; i++)
        free(c.bytes[i]);
}

/* Pack and cut again (see the file comment): each datagram is checked
 * against the next of "want", the segments vtep_gso_segment made. */
struct pack_check {
    const struct cut *want;
    uint32_t next;
    uint32_t udp;             /* where the outer UDP header is */
};

static int check_packed(void *ctx, const struct iovec *iov, int n)
{
    struct pack_check *pc = ctx;
    static uint8_t packet[65536 + 4096], split[65536 + 4096 + 128 * 62];
    static vtep_pkt_t pkts[128];
    struct vtep_vnet_hdr vnet;
    CHECK(n >= 4 && iov[0].iov_len == VTEP_VNET_HDR_LEN && iov[1].iov_len == pc->udp + 8);
    memcpy(&vnet, iov[0].iov_base, sizeof vnet);
    uint32_t len = 0;
    for (int i = 1; i < n; i++) {
        CHECK(len + iov[i].iov_len <= sizeof packet);
        memcpy(packet + len, iov[i].iov_base, iov[i].iov_len);
        len += (uint32_t)iov[i].iov_len;
    }
    CHECK(len - 14 <= 65535);
    CHECK(vnet.flags == VTEP_VNET_NEEDS_CSUM && vnet.csum_start == pc->udp && vnet.csum_offset == 6);
    uint32_t k = 1;
    pkts[0] = (vtep_pkt_t){.data = packet, .len = len};
    if (vnet.gso_type == VTEP_GSO_UDP_L4)
        k = vtep_udp_split(packet, len, vnet.gso_size, split, sizeof split, pkts, 128);
    CHECK(k == (uint32_t)(n - 2) / 2 && k <= VTEP_PACK_MAX_SEGS);
    for (uint32_t j = 0; j < k; j++) {
        CHECK(pc->next < pc->want->n);
        const uint8_t *got = pkts[j].data, *want = pc->want->bytes[pc->next];
        uint32_t want_len = pc->want->len[pc->next++];
        CHECK(pkts[j].len == want_len);
        if (pc->udp == 34) {  /* IPv4: all but the ID and the header checksum, which must be right */
            CHECK(!memcmp(got, want, 18) && !memcmp(got + 20, want + 20, 4) && !memcmp(got + 26, want + 26, 8));
            CHECK(vtep_csum_fold(vtep_csum_add(0, got + 14, 20)) == 0xffff);
        } else {
            CHECK(!memcmp(got, want, pc->udp));
        }
        CHECK(!memcmp(got + pc->udp, want + pc->udp, 6));  /* the UDP checksum is the cutter's */
        CHECK(!memcmp(got + pc->udp + 8, want + pc->udp + 8, want_len - pc->udp - 8));
    }
    return 0;
}

static void check_pack(const uint8_t *frame, size_t len, uint32_t hdr, uint16_t gso_size, const uint8_t *outer,
                       uint32_t outer_len)
{
    struct cut want = {.n = 0};
    if ((len - hdr + gso_size - 1) / gso_size > VTEP_GRO_MAX_SEGS)
        return;  /* keep_segment keeps no more */
    CHECK(vtep_gso_segment(outer, outer_len, frame, (uint32_t)len, hdr, gso_size, keep_segment, &want) > 0);
    struct pack_check pc = {.want = &want, .udp = vtep_get_be16(outer + 12) == 0x86dd ? 54 : 34};
    int n = vtep_gso_pack(outer, outer_len, frame, (uint32_t)len, hdr, gso_size, check_packed, &pc);
    CHECK(n > 0 && pc.next == want.n);
    for (uint32_t i = 0; i < want.n; i++)
        free(want.bytes[i]);
}

static void check_gso(const uint8_t *frame, size_t len, uint8_t gso_type, uint16_t gso_size, uint8_t outer_kind)
{
    uint32_t hdr = vtep_gso_headers(frame, (uint32_t)len, gso_type);
    if (!hdr)
        return;
    CHECK(hdr >= 14 + 20 + 8 && hdr < len && hdr <= 14 + 60 + 60);
    uint8_t outer[VTEP_HDR_ROOM];
    uint32_t outer_len = outer_headers(outer_kind, frame, len, outer);
    struct fuzz_gso g = {.next = frame + hdr, .end = frame + len, .h_len = outer_len + hdr, .outer_len = outer_len,
                         .gso_size = gso_size, .checksums = 1};
    int n = vtep_gso_segment(outer, outer_len, frame, (uint32_t)len, hdr, gso_size, fuzz_gso_emit, &g);
    if (!gso_size) {
        CHECK(n == -EINVAL && g.segments == 0);
        return;
    }
    CHECK(n > 0 && (uint32_t)n == g.segments && g.next == g.end);
    CHECK((uint32_t)n == (len - hdr + gso_size - 1) / gso_size);
    if (!outer_kind && (gso_type & 0x7f) != VTEP_GSO_UDP_L4)
        check_gro(frame, len, hdr, gso_size);
    if (outer_len && outer_kind != 3)  /* VXLAN */
        check_pack(frame, len, hdr, gso_size, outer, outer_len);
}

static void check_split(const uint8_t *frame, size_t len, uint16_t gso_size)
{
    static uint8_t out[65536 + 128 * 82];
    static vtep_pkt_t pkts[128];
    uint32_t n = vtep_udp_split(frame, (uint32_t)len, gso_size, out, sizeof out, pkts, 128);
    if (!n)
        return;
    /* It took the frame for Ethernet, IPv4 or IPv6, and UDP. */
    uint32_t hdr = (vtep_get_be16(frame + 12) == 0x86dd ? 54 : 14 + (frame[14] & 0xfu) * 4) + 8;
    uint32_t at = 0, payload = 0;
    for (uint32_t k = 0; k < n; k++) {
        const vtep_pkt_t *p = &pkts[k];
        CHECK(p->data == out + at && p->len > hdr && p->len - hdr <= gso_size);
        CHECK(k + 1 == n || p->len - hdr == gso_size);
        CHECK(!memcmp(p->data + hdr, frame + hdr + payload, p->len - hdr));
        CHECK(!memcmp(p->data, frame, 14) && vtep_get_be16(p->data + hdr - 4) == p->len - hdr + 8);
        at += p->len;
        payload += p->len - hdr;
    }
    CHECK(hdr + payload == len && at <= sizeof out);
}

/* Any header length: an error, or segments that stay in bounds (their
 * contents are only right for the length vtep_gso_headers gives). */
static void check_gso_any_header(const uint8_t *frame, size_t len, uint32_t hdr, uint16_t gso_size)
{
    struct fuzz_gso g = {.next = frame + hdr, .end = frame + len, .h_len = hdr, .gso_size = gso_size};
    if (hdr >= len)
        g.next = g.end;
    int n = vtep_gso_segment(NULL, 0, frame, (uint32_t)len, hdr, gso_size, fuzz_gso_emit, &g);
    CHECK(n == -EINVAL ? g.segments == 0 : n > 0 && (uint32_t)n == g.segments && g.next == g.end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t gso_type = fuzz_u8(&in);
    uint16_t gso_size = fuzz_u16(&in);
    uint8_t outer_kind = fuzz_u8(&in);
    uint32_t start = fuzz_u32(&in), offset = fuzz_u32(&in);
    uint8_t raw_hdr = fuzz_u8(&in);
    size_t len = 65535;  /* no link delivers more; GSO's 16-bit lengths hold it */
    uint8_t *frame = fuzz_take(&in, &len);

    check_csum_finish(frame, len, start, offset);
    check_csum_fill(frame, len);
    check_gso(frame, len, gso_type, gso_size, outer_kind);
    check_gso_any_header(frame, len, raw_hdr, gso_size);
    check_split(frame, len, gso_size);
    fuzz_free(frame);
    return 0;
}
