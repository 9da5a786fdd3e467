/* libFuzzer target: one input is one frame, fed to everything that parses
 * frames: vtep_decap, the flow hash, and both bursts of an IPv4 and an IPv6
 * engine (one PVLAN segment per encapsulation, every role, learning on, one
 * resolved and one unresolved remote).  Beyond "no crash, no over-read" it
 * checks that outputs lie inside the input and that whatever the engine
 * encapsulates decapsulates back to the same frame.
 *
 *   make fuzz                 clang + libFuzzer, FUZZ_SECONDS per run
 *   make test-c               replays tests/fuzz/corpus under ASan/UBSan (gcc) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vtep.h"

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                            \
        }                                                                       \
    } while (0)

enum { MAX_OUT = 32, ROLES = 4 };

struct vtep_under_test {
    vtep_engine_t *e;
    vtep_worker_t *w;
    int ports[2][ROLES];  /* by segment (VXLAN, NVGRE), then role */
};

static struct vtep_under_test vteps[2];  /* IPv4, IPv6 */

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

static void build(struct vtep_under_test *v, int family)
{
    static const uint8_t mac[6] = {2, 0, 0, 0, 0, 0xfe};
    vtep_engine_params_t p = {.max_ports = 16, .max_segments = 4, .max_remotes = 4, .underlay_mtu = 1500,
                              .destination_port = 4789, .port_min = 49152, .port_max = 65535, .ttl = 64};
    int err;
    addr(&p.local, family, 2);  /* the golden captures' receiver */
    v->e = vtep_engine_new(&p, &err);
    v->w = vtep_worker_new(v->e);
    vtep_addr_t a;
    addr(&a, family, 1);
    int resolved = vtep_remote_add(v->e, &a);
    addr(&a, family, 3);
    int unresolved = vtep_remote_add(v->e, &a);
    CHECK(v->e && v->w && resolved >= 0 && unresolved >= 0);
    vtep_remote_set_neighbour(v->e, (uint32_t)resolved, mac);
    for (int enc = 0; enc < 2; enc++) {
        vtep_segment_params_t sp = {.encapsulation = (vtep_encap_t)enc, .vni = 5000, .isolated_vni = 5001,
                                    .n_communities = 2, .community_vni = {5002, 5003}, .mac_learning = 1,
                                    .fdb_ageing_sec = 300, .maximum_fdb_entries = 64};
        int seg = vtep_segment_add(v->e, &sp);
        CHECK(seg >= 0);
        vtep_segment_add_remote(v->e, (uint32_t)seg, (uint32_t)resolved);
        vtep_segment_add_remote(v->e, (uint32_t)seg, (uint32_t)unresolved);
        for (int r = 0; r < ROLES; r++)
            v->ports[enc][r] = vtep_port_add(v->e, (uint32_t)seg, (uint8_t)(VTEP_CLASS_PROMISCUOUS + r));
    }
}

/* Every output must point into "buf" and, when encapsulated, carry it back. */
static void check_outputs(const vtep_out_t *outs, int n, const uint8_t *buf, size_t size, int family)
{
    CHECK(n >= 0 && n <= MAX_OUT);
    for (int i = 0; i < n; i++) {
        const vtep_out_t *o = &outs[i];
        CHECK(o->data >= buf && o->data + o->data_len <= buf + size && o->hdr_len <= VTEP_HDR_ROOM);
        if (o->kind != VTEP_OUT_UNDERLAY)
            continue;
        uint8_t packet[VTEP_HDR_ROOM + 65536];
        memcpy(packet, o->hdr, o->hdr_len);
        memcpy(packet + o->hdr_len, o->data, o->data_len);
        vtep_decap_info_t info;
        CHECK(vtep_decap(packet, o->hdr_len + (size_t)o->data_len, 4789, 0, &info) == VTEP_DROP_NONE);
        CHECK(info.src.family == family && info.inner_len == o->data_len);
        CHECK(memcmp(packet + info.inner_offset, o->data, o->data_len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vteps[0].e) {
        build(&vteps[0], 4);
        build(&vteps[1], 6);
    }
    /* An exact-size copy: a sanitizer catches any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    vtep_decap_info_t info;
    if (vtep_decap(buf, size, 4789, 0, &info) == VTEP_DROP_NONE)
        CHECK(info.inner_len >= 14 && info.inner_offset + (size_t)info.inner_len <= size);
    (void)vtep_flow_hash(buf, size);

    /* The first byte also says whether the kernel vouched for the checksum. */
    vtep_pkt_t pkt = {.data = buf, .len = (uint32_t)size, .flags = size && buf[0] >> 7 ? VTEP_PKT_CSUM_OK : 0};
    vtep_out_t outs[MAX_OUT];
    uint8_t verdict;
    uint32_t now = size ? buf[0] : 0;  /* the clock moves with the input, to reach ageing */
    for (int f = 0; f < 2; f++) {
        struct vtep_under_test *v = &vteps[f];
        int n = vtep_underlay_burst(v->w, &pkt, 1, now, outs, MAX_OUT, &verdict);
        CHECK(verdict < VTEP_DROP_COUNT && (verdict == VTEP_DROP_NONE) == (n > 0));
        check_outputs(outs, n, buf, size, f ? 6 : 4);
        int port = v->ports[size % 2][size / 2 % ROLES];
        n = vtep_access_burst(v->w, (uint32_t)port, &pkt, 1, now, outs, MAX_OUT, &verdict);
        CHECK(verdict < VTEP_DROP_COUNT && (verdict == VTEP_DROP_NONE) == (n > 0));
        check_outputs(outs, n, buf, size, f ? 6 : 4);
    }
    free(buf);
    return 0;
}
