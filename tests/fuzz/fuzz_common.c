/* Shared by the fuzz targets: see fuzz_common.h. */
#include "fuzz_common.h"

static void addr(vtep_addr_t *a, int family, uint8_t last)
{
    memset(a, 0, sizeof *a);
    a->family = (uint8_t)family;
    if (family == 4) {
        a->bytes[0] = 198, a->bytes[1] = 18, a->bytes[3] = last;       /* 198.18.0.last */
    } else {
        a->bytes[0] = 0x20, a->bytes[1] = 0x01, a->bytes[2] = 0x0d, a->bytes[3] = 0xb8;
        a->bytes[5] = 0x0f, a->bytes[15] = last;                       /* 2001:db8:f::last */
    }
}

/* The static entries of fuzz_vtep_init, by index: 0..3 local (role i),
 * 4 remote role unknown, 5..8 remote role i - 5, 9 unresolved remote. */
enum { STATIC_ENTRIES = 10 };

static vtep_fdb_entry_t static_entry(const fuzz_vtep_t *v, int s, int i)
{
    vtep_fdb_entry_t f = {.mac = {2, 0, 0, 0, 0, 0}, .is_static = 1};
    if (i < FUZZ_ROLES) {
        f.mac[5] = (uint8_t)(0x30 + i);
        f.kind = VTEP_FDB_LOCAL;
        f.target = (uint16_t)v->ports[s][i];
        f.pvlan_class = (uint8_t)(VTEP_CLASS_PROMISCUOUS + i);
        return f;
    }
    f.kind = VTEP_FDB_REMOTE;
    f.target = (uint16_t)v->remote_resolved;
    if (i == FUZZ_ROLES) {
        f.mac[5] = 0x02;
        f.pvlan_class = VTEP_CLASS_UNKNOWN;
    } else if (i < 2 * FUZZ_ROLES + 1) {
        f.mac[5] = (uint8_t)(0x10 + i - FUZZ_ROLES - 1);
        f.pvlan_class = (uint8_t)(VTEP_CLASS_PROMISCUOUS + i - FUZZ_ROLES - 1);
    } else {
        f.mac[5] = 0x20;
        f.target = (uint16_t)v->remote_unresolved;
    }
    return f;
}

void fuzz_vtep_init(fuzz_vtep_t *v, int family, uint32_t max_fdb)
{
    static const uint8_t next_hop[6] = {2, 0, 0, 0, 0, 0xfe};
    vtep_engine_params_t p = {.max_ports = 16, .max_segments = 4, .max_remotes = 4, .underlay_mtu = FUZZ_MTU,
                              .destination_port = 4789, .port_min = 49152, .port_max = 65535, .ttl = 64};
    int err;
    memset(v, 0, sizeof *v);
    v->family = family;
    addr(&p.local, family, 2);  /* the golden captures' receiver */
    v->e = vtep_engine_new(&p, &err);
    CHECK(v->e);
    v->w = vtep_worker_new(v->e);
    vtep_addr_t a;
    addr(&a, family, 1);
    v->remote_resolved = vtep_remote_add(v->e, &a);
    addr(&a, family, 3);
    v->remote_unresolved = vtep_remote_add(v->e, &a);
    CHECK(v->w && v->remote_resolved >= 0 && v->remote_unresolved >= 0);
    CHECK(vtep_remote_set_neighbour(v->e, (uint32_t)v->remote_resolved, next_hop) == 0);
    for (int s = 0; s < FUZZ_SEGMENTS; s++) {
        vtep_segment_params_t sp = {.encapsulation = (vtep_encap_t)s, .vni = FUZZ_VNI, .isolated_vni = FUZZ_VNI + 1,
                                    .n_communities = 2, .community_vni = {FUZZ_VNI + 2, FUZZ_VNI + 3},
                                    .mac_learning = 1, .fdb_ageing_sec = 300, .maximum_fdb_entries = max_fdb};
        int seg = vtep_segment_add(v->e, &sp);
        CHECK(seg >= 0);
        v->segs[s] = (uint32_t)seg;
        CHECK(vtep_segment_add_remote(v->e, (uint32_t)seg, (uint32_t)v->remote_resolved) == 0);
        CHECK(vtep_segment_add_remote(v->e, (uint32_t)seg, (uint32_t)v->remote_unresolved) == 0);
        for (int r = 0; r < FUZZ_ROLES; r++) {
            v->ports[s][r] = vtep_port_add(v->e, (uint32_t)seg, (uint8_t)(VTEP_CLASS_PROMISCUOUS + r));
            CHECK(v->ports[s][r] >= 0);
        }
        for (int i = 0; i < STATIC_ENTRIES; i++) {
            vtep_fdb_entry_t f = static_entry(v, s, i);
            CHECK(vtep_fdb_add(v->e, (uint32_t)seg, &f) == 0);
        }
    }
}

void fuzz_vtep_free(fuzz_vtep_t *v)
{
    vtep_worker_free(v->w);
    vtep_engine_free(v->e);
}

/* Segment index (0, 1) and role of port "port", or -1. */
static int port_place(const fuzz_vtep_t *v, uint32_t port, int *role)
{
    for (int s = 0; s < FUZZ_SEGMENTS; s++)
        for (int r = 0; r < FUZZ_ROLES; r++)
            if ((uint32_t)v->ports[s][r] == port) {
                *role = r;
                return s;
            }
    return -1;
}

uint8_t fuzz_port_class(const fuzz_vtep_t *v, uint32_t port)
{
    int role;
    CHECK(port_place(v, port, &role) >= 0);
    return (uint8_t)(VTEP_CLASS_PROMISCUOUS + role);
}

void fuzz_check_static(const fuzz_vtep_t *v, uint32_t now)
{
    for (int s = 0; s < FUZZ_SEGMENTS; s++)
        for (int i = 0; i < STATIC_ENTRIES; i++) {
            vtep_fdb_entry_t want = static_entry(v, s, i), got;
            CHECK(vtep_fdb_get(v->e, v->segs[s], want.mac, now, &got) == 0);
            CHECK(got.is_static && got.kind == want.kind && got.target == want.target
                  && got.pvlan_class == want.pvlan_class);
        }
}

uint8_t fuzz_u8(fuzz_input_t *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

uint16_t fuzz_u16(fuzz_input_t *in)
{
    uint16_t lo = fuzz_u8(in);
    return (uint16_t)(lo | fuzz_u8(in) << 8);
}

uint32_t fuzz_u32(fuzz_input_t *in)
{
    uint32_t lo = fuzz_u16(in);
    return lo | (uint32_t)fuzz_u16(in) << 16;
}

uint8_t *fuzz_take(fuzz_input_t *in, size_t *n)
{
    if (*n > in->left)
        *n = in->left;
    /* At an odd address, so that UBSan sees every access that assumes
     * alignment, and ending where the allocation ends, for ASan. */
    uint8_t *block = malloc(*n + 1);
    CHECK(block);
    memcpy(block + 1, in->p, *n);
    in->p += *n;
    in->left -= *n;
    return block + 1;
}

void fuzz_free(uint8_t *frame)
{
    free(frame - 1);
}

/* Segment index and sender class of underlay frame "p" (it was accepted,
 * so it decapsulates to one of the roles' VNIs). */
static void underlay_sender(const vtep_pkt_t *p, int *seg, uint8_t *from)
{
    vtep_decap_info_t info;
    CHECK(vtep_decap(p->data, p->len, 4789, p->flags, &info) == VTEP_DROP_NONE);
    CHECK(info.vni >= FUZZ_VNI && info.vni < FUZZ_VNI + FUZZ_ROLES);
    *seg = info.encapsulation;
    *from = (uint8_t)(VTEP_CLASS_PROMISCUOUS + info.vni - FUZZ_VNI);
}

static void check_underlay_out(const fuzz_vtep_t *v, const vtep_out_t *o, const vtep_pkt_t *p, uint8_t from)
{
    static uint8_t packet[VTEP_HDR_ROOM + 65536];
    CHECK(o->target == (uint32_t)v->remote_resolved);
    if (!p->gso_size)  /* a super-frame's segments are checked as they are sent */
        CHECK(o->hdr_len + (uint32_t)o->data_len - 14 <= FUZZ_MTU);
    memcpy(packet, o->hdr, o->hdr_len);
    memcpy(packet + o->hdr_len, o->data, o->data_len);
    vtep_decap_info_t info;
    CHECK(vtep_decap(packet, o->hdr_len + (size_t)o->data_len, 4789, 0, &info) == VTEP_DROP_NONE);
    CHECK(info.src.family == v->family && info.inner_len == o->data_len && info.inner_offset == o->hdr_len);
    CHECK(info.vni == (uint32_t)(FUZZ_VNI + from - VTEP_CLASS_PROMISCUOUS));
    CHECK(memcmp(packet + info.inner_offset, o->data, o->data_len) == 0);
}

void fuzz_check_burst(const fuzz_vtep_t *v, uint32_t ingress, const vtep_pkt_t *pkts, uint32_t n_pkts,
                      const vtep_out_t *outs, int n_out, const uint8_t *verdicts)
{
    static uint32_t per_pkt[256];
    CHECK(n_out >= 0 && n_out <= FUZZ_MAX_OUT && n_pkts <= 256);
    memset(per_pkt, 0, n_pkts * sizeof *per_pkt);
    int in_role = 0, in_seg = ingress == UINT32_MAX ? -1 : port_place(v, ingress, &in_role);
    for (int i = 0; i < n_out; i++) {
        const vtep_out_t *o = &outs[i];
        CHECK(o->pkt < n_pkts);
        const vtep_pkt_t *p = &pkts[o->pkt];
        per_pkt[o->pkt]++;
        CHECK(o->data >= p->data && o->data + o->data_len <= p->data + p->len && o->hdr_len <= VTEP_HDR_ROOM);
        int seg = in_seg;
        uint8_t from = (uint8_t)(VTEP_CLASS_PROMISCUOUS + in_role);
        if (ingress == UINT32_MAX)
            underlay_sender(p, &seg, &from);
        CHECK(o->segment == v->segs[seg]);
        if (o->kind == VTEP_OUT_UNDERLAY) {
            CHECK(ingress != UINT32_MAX);  /* split horizon */
            check_underlay_out(v, o, p, from);
            continue;
        }
        int role;
        CHECK(o->kind == VTEP_OUT_PORT && o->hdr_len == 0 && o->target != ingress);
        CHECK(port_place(v, o->target, &role) == seg);
        CHECK(vtep_pvlan_allows(from, (uint8_t)(VTEP_CLASS_PROMISCUOUS + role)));
    }
    for (uint32_t i = 0; i < n_pkts; i++)
        CHECK(verdicts[i] < VTEP_DROP_COUNT && (verdicts[i] == VTEP_DROP_NONE) == (per_pkt[i] > 0));
}

int fuzz_l4_csum_ok(const uint8_t *f, uint32_t len)
{
    static uint8_t copy[65536 + 256];
    CHECK(len <= sizeof copy);
    memcpy(copy, f, len);
    vtep_l4_csum_fill(copy, len);
    return memcmp(copy, f, len) == 0;
}

/* A segment as sent: its outer headers (if any) decapsulate, with a UDP
 * checksum that verifies; its IPv4 header and TCP/UDP checksums are right. */
static void check_segment_bytes(const struct fuzz_gso *g, const uint8_t *h, const uint8_t *payload, uint32_t n)
{
    static uint8_t seg[VTEP_HDR_ROOM + 65536 + 256];
    uint32_t len = g->h_len + n;
    CHECK(len <= sizeof seg);
    memcpy(seg, h, g->h_len);
    memcpy(seg + g->h_len, payload, n);
    const uint8_t *inner = seg + g->outer_len;
    if (g->outer_len) {
        vtep_decap_info_t info;
        CHECK(vtep_decap(seg, len, 4789, 0, &info) == VTEP_DROP_NONE);
        CHECK(info.inner_offset == g->outer_len && info.inner_len == len - g->outer_len);
    }
    uint32_t inner_len = len - g->outer_len;
    if (inner[12] == 0x08 && inner[13] == 0x00)
        CHECK(vtep_checksum(inner + 14, (inner[14] & 0xfu) * 4u) == 0);
    CHECK(fuzz_l4_csum_ok(inner, inner_len));
}

int fuzz_gso_emit(void *ctx, const uint8_t *h, uint32_t h_len, const uint8_t *payload, uint32_t n)
{
    struct fuzz_gso *g = ctx;
    CHECK(h_len == g->h_len && payload == g->next && n > 0 && n <= g->gso_size && n <= (size_t)(g->end - payload));
    if (g->max_ip_len)
        CHECK(h_len + n - 14 <= g->max_ip_len);  /* the outer IP packet, without the outer Ethernet header */
    if (g->checksums)
        check_segment_bytes(g, h, payload, n);
    g->next += n;
    g->segments++;
    return 0;
}

void fuzz_send(const vtep_out_t *o, vtep_pkt_t *p)
{
    if (p->flags & VTEP_PKT_CSUM_PARTIAL) {
        vtep_l4_csum_fill((uint8_t *)o->data, o->data_len);
        p->flags &= ~(uint32_t)VTEP_PKT_CSUM_PARTIAL;
    }
    if (!p->gso_size)
        return;
    struct fuzz_gso g = {.next = o->data + p->gso_hdr_len, .end = o->data + o->data_len,
                         .h_len = o->hdr_len + (uint32_t)p->gso_hdr_len, .outer_len = o->hdr_len,
                         .gso_size = p->gso_size, .max_ip_len = o->kind == VTEP_OUT_UNDERLAY ? FUZZ_MTU : 0,
                         .checksums = 1};
    int n = vtep_gso_segment(o->hdr, o->hdr_len, o->data, o->data_len, p->gso_hdr_len, p->gso_size,
                             fuzz_gso_emit, &g);
    CHECK(n > 0 && (uint32_t)n == g.segments && g.next == g.end);
}
