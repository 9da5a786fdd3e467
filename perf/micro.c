/* Micro-benchmark of the fast path: nanoseconds per 64-byte inner frame for
 * the stateless encapsulation and decapsulation, and for the tx (access port
 * -> underlay) and rx (underlay -> access port) burst pipelines.
 *
 * Public API only (vtep.h).  JSON on stdout (or --json FILE), progress on
 * stderr.  perf/README.md says what each figure means; perf/micro_engine.py
 * builds the same engines and the same frames (same generator, same seeds)
 * through the Cython engine, so the two can be compared figure by figure.
 *
 * Every run is checked: before timing, every output of one pass is compared
 * with what the FDB says; while timing, every burst must give n outputs and
 * all-zero verdicts; after timing, the engine's counters must show every
 * frame sent and nothing dropped.  Any mismatch exits with status 1.
 *
 * Memory is laid out as a worker would have it (frames in one receive pool,
 * one output array reused by every burst); --layout engine lays each burst
 * out as dataplane._engine.Burst does instead, to check that a gap between
 * this driver and the engine is not that layout.
 *
 * The scaling scenarios (tx-scaling, rx-scaling) run the tx or rx pipeline
 * on 1 and on --threads threads at once, by turns, each pinned to its own CPU
 * with its own worker and its own pool of frames, over one engine, as
 * vtepd's workers are: frames per second of all threads together show
 * whether workers scale where no generator or socket limits them. */
#define _GNU_SOURCE   /* pthread_setaffinity_np */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "vtep.h"

enum {
    NOW = 1000,              /* the clock every burst is given: "same second" */
    FRAME_LEN = 64,          /* inner frame: Ethernet + IPv4 + UDP, no FCS */
    OUTER_LEN = FRAME_LEN + VTEP_OVERHEAD_IPV4,  /* VXLAN over IPv4, outer Ethernet included */
    N_REMOTES = 4,           /* remote VTEPs the remote MACs are spread over */
    N_RX_PORTS = 8,          /* local ports the rx destinations are spread over */
    MAX_REPS = 100,
    VNI_PRIMARY = 100, VNI_ISOLATED = 101, VNI_COMMUNITY0 = 102, VNI_COMMUNITY1 = 103,
    /* MAC families: byte 1 of the MAC, so families never collide. */
    MAC_REMOTE_HOST = 0x10,  /* tx destinations, behind remote VTEPs */
    MAC_LOCAL_HOST = 0x20,   /* rx destinations, behind local ports */
    MAC_TX_SENDER = 0x30,    /* the host on the tx ingress port */
    MAC_RX_SENDER = 0x40,    /* one host behind each remote VTEP, sending rx frames */
};

static const uint8_t UNDERLAY_MAC[6] = {0x02, 0, 0, 0, 0, 0};  /* the engine's default */
static const uint8_t NEXT_HOP_MAC[6] = {0x02, 0, 0, 0, 0, 0xfe};

static double opt_min_time = 0.2;  /* seconds per repetition */
static int opt_reps = 5;
static int opt_engine_layout;      /* --layout engine: memory as dataplane._engine.Burst lays it out */
static uint32_t opt_pool;          /* 0: pool_size() */
static int opt_threads = 2;        /* the scaling scenarios: 1 thread, then this many */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("micro: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

static double clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* ---- Frames: micro_engine.py mirrors this section exactly. ---- */

/* splitmix64. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ z >> 27) * 0x94d049bb133111ebull;
    return z ^ z >> 31;
}

/* A bijection on 32 bits: MAC numbers i != j give different MACs, and the
 * MACs look random to the FDB hash rather than sequential. */
static uint32_t mix32(uint32_t x)
{
    x *= 0x9e3779b1u;
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    return x ^ x >> 13;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

/* Unicast, locally administered MAC number "i" of "family". */
static void make_mac(uint8_t mac[6], uint8_t family, uint32_t i)
{
    uint32_t x = mix32(i);
    mac[0] = 0x02;
    mac[1] = family;
    put16(mac + 2, (uint16_t)(x >> 16));
    put16(mac + 4, (uint16_t)x);
}

/* A 64-byte Ethernet + IPv4 + UDP frame whose addresses and ports come
 * from "r" (so flows, hence UDP source ports, vary). */
static void make_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint64_t r)
{
    memset(f, 0, FRAME_LEN);
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    put16(f + 12, 0x0800);
    uint8_t *ip = f + 14, *udp = ip + 20;
    ip[0] = 0x45;
    put16(ip + 2, FRAME_LEN - 14);
    ip[8] = 64;
    ip[9] = 17;
    /* Hosts in the benchmarking range 198.18.0.0/15: 16 bits of flow each. */
    ip[12] = 198, ip[13] = 18, put16(ip + 14, (uint16_t)r);
    ip[16] = 198, ip[17] = 19, put16(ip + 18, (uint16_t)(r >> 16));
    put16(ip + 10, vtep_checksum(ip, 20));
    put16(udp, (uint16_t)(r >> 32));
    put16(udp + 2, (uint16_t)(r >> 48));
    put16(udp + 4, FRAME_LEN - 34);
}

/* Frames per pool: at least 8192, and for big tables a quarter of the
 * entries (at most 2^18), so that one pass touches far more FDB cache lines
 * than the last-level cache holds and the 1,000,000 case pays for its
 * misses.  A multiple of every batch size. */
static uint32_t pool_size(uint32_t fdb)
{
    if (opt_pool)
        return opt_pool;
    uint32_t n = 8192;
    while (n < fdb / 4 && n < (1u << 18))
        n *= 2;
    return n;
}

/* ---- Engines ---- */

static void ip4(vtep_addr_t *a, uint8_t last)
{
    memset(a, 0, sizeof *a);
    a->family = 4;
    a->bytes[0] = 198, a->bytes[1] = 18, a->bytes[3] = last;  /* 198.18.0.last */
}

/* The engine's defaults (those of dataplane._engine.Engine), local 198.18.0.1,
 * and one PVLAN segment: primary + isolated + 2 community VNIs, VXLAN, with
 * "n_remotes" resolved remote VTEPs 198.18.0.2.. on its list. */
static vtep_engine_t *engine_new(uint32_t fdb_max, int *seg)
{
    vtep_engine_params_t p = {
        .max_ports = 1024, .max_segments = 256, .max_remotes = 1024,
        .underlay_mtu = 1500, .destination_port = 4789, .port_min = 49152, .port_max = 65535,
        .ttl = 64, .udp_checksum = 0,
    };
    ip4(&p.local, 1);
    memcpy(p.underlay_mac, UNDERLAY_MAC, 6);
    int err;
    vtep_engine_t *e = vtep_engine_new(&p, &err);
    if (!e)
        die("vtep_engine_new: %d", err);
    vtep_segment_params_t sp = {
        .encapsulation = VTEP_ENCAP_VXLAN, .vni = VNI_PRIMARY, .isolated_vni = VNI_ISOLATED,
        .n_communities = 2, .community_vni = {VNI_COMMUNITY0, VNI_COMMUNITY1},
        .mac_learning = 1, .fdb_ageing_sec = 300, .maximum_fdb_entries = fdb_max,
    };
    if ((*seg = vtep_segment_add(e, &sp)) < 0)
        die("vtep_segment_add: %d", *seg);
    for (int r = 0; r < N_REMOTES; r++) {
        vtep_addr_t a;
        ip4(&a, (uint8_t)(2 + r));
        int rid = vtep_remote_add(e, &a);
        if (rid != r || vtep_remote_set_neighbour(e, (uint32_t)rid, NEXT_HOP_MAC)
            || vtep_segment_add_remote(e, (uint32_t)*seg, (uint32_t)rid))
            die("remote %d: %d", r, rid);
    }
    return e;
}

static void fdb_add(vtep_engine_t *e, int seg, uint8_t family, uint32_t i, uint8_t kind,
                    uint16_t target, uint8_t cls, int is_static)
{
    vtep_fdb_entry_t en = {.kind = kind, .is_static = (uint8_t)is_static, .pvlan_class = cls,
                           .target = target, .last_seen = NOW};
    make_mac(en.mac, family, i);
    int rc = vtep_fdb_add(e, (uint32_t)seg, &en);
    if (rc)
        die("vtep_fdb_add: %d", rc);
}

/* ---- Scenarios ---- */

/* What one burst call reads and writes. */
struct io {
    vtep_pkt_t *pkts;
    vtep_out_t *outs;
    uint8_t *verdicts;
    uint8_t *buf;            /* --layout engine: this burst's copy of its frames */
};

struct pipe {                /* a tx or rx run */
    vtep_engine_t *e;
    vtep_worker_t *w;
    int seg;
    uint32_t port;           /* tx: the ingress port */
    uint16_t rx_ports[N_RX_PORTS];
    uint32_t fdb, pool, batch;
    uint8_t *frames;         /* pool frames, "stride" bytes apart */
    uint32_t stride;
    vtep_pkt_t *pkts;
    uint16_t *expect;        /* per frame: the remote (tx) or port (rx) it must go to */
    vtep_out_t *outs;        /* worker layout: the one output array every burst reuses */
    uint8_t *verdicts;
    struct io *io;           /* per burst of the current batch size */
    uint64_t frames_run;
    double build_s;          /* seconds to build the FDB */
};

static void pipe_alloc(struct pipe *p, uint32_t stride)
{
    p->stride = stride;
    p->frames = xcalloc(p->pool, stride);
    p->pkts = xcalloc(p->pool, sizeof *p->pkts);
    p->expect = xcalloc(p->pool, sizeof *p->expect);
    p->verdicts = xcalloc(p->pool, 1);
    for (uint32_t k = 0; k < p->pool; k++)
        p->pkts[k] = (vtep_pkt_t){.data = p->frames + (size_t)k * stride};
}

/* Lay the pool out in bursts of "batch".  Worker layout: frames in one pool
 * (a receive ring), one output array reused by every burst.  Engine layout:
 * each burst's descriptors, outputs, verdicts and frame copy in blocks of
 * their own, malloc'd in the order engine.pyx's Burst does, so that the C
 * driver can tell the engine's memory layout from its Python loop. */
static void pipe_set_batch(struct pipe *p, uint32_t batch)
{
    p->batch = batch;
    p->io = xcalloc(p->pool / batch, sizeof *p->io);
    if (!opt_engine_layout)
        p->outs = xcalloc(batch, sizeof *p->outs);
    for (uint32_t b = 0; b < p->pool / batch; b++) {
        struct io *io = &p->io[b];
        uint32_t first = b * batch;
        if (!opt_engine_layout) {
            *io = (struct io){p->pkts + first, p->outs, p->verdicts + first, NULL};
            continue;
        }
        io->pkts = xcalloc(batch, sizeof *io->pkts);
        io->outs = xcalloc(batch, sizeof *io->outs);
        io->verdicts = xcalloc(batch, 1);
        io->buf = xcalloc(batch, p->stride);
        memcpy(io->buf, p->frames + (size_t)first * p->stride, (size_t)batch * p->stride);
        for (uint32_t j = 0; j < batch; j++)
            io->pkts[j] = (vtep_pkt_t){.data = io->buf + (size_t)j * p->stride, .len = p->pkts[first + j].len};
    }
}

static void pipe_free_batch(struct pipe *p)
{
    for (uint32_t b = 0; opt_engine_layout && b < p->pool / p->batch; b++)
        free(p->io[b].pkts), free(p->io[b].outs), free(p->io[b].verdicts), free(p->io[b].buf);
    free(p->io);
    free(p->outs);
    p->outs = NULL;
}

static void pipe_free(struct pipe *p)
{
    vtep_engine_free(p->e);
    free(p->frames), free(p->pkts), free(p->expect), free(p->verdicts);
}

static void tx_frames(struct pipe *p, uint64_t seed);
static void rx_frames(struct pipe *p, uint64_t seed);

/* tx: one community port; FDB = its host (learned, seen NOW) + fdb-1 static
 * remote MACs of role promiscuous spread over the remote VTEPs; each frame
 * goes from that host to a remote MAC drawn uniformly. */
static void tx_setup(struct pipe *p)
{
    double t0 = now_ns();
    p->e = engine_new(p->fdb, &p->seg);
    int port = vtep_port_add(p->e, (uint32_t)p->seg, VTEP_CLASS_COMMUNITY + 0);
    if (port < 0)
        die("vtep_port_add: %d", port);
    p->port = (uint32_t)port;
    uint32_t n_dst = p->fdb - 1;
    fdb_add(p->e, p->seg, MAC_TX_SENDER, 0, VTEP_FDB_LOCAL, (uint16_t)port, 0, 0);
    for (uint32_t i = 0; i < n_dst; i++)
        fdb_add(p->e, p->seg, MAC_REMOTE_HOST, i, VTEP_FDB_REMOTE, (uint16_t)(i % N_REMOTES),
                VTEP_CLASS_PROMISCUOUS, 1);
    p->build_s = (now_ns() - t0) / 1e9;
    if (vtep_fdb_count(p->e, (uint32_t)p->seg) != (int)p->fdb)
        die("tx FDB holds %d entries, not %u", vtep_fdb_count(p->e, (uint32_t)p->seg), p->fdb);
    tx_frames(p, 0);
    if (!(p->w = vtep_worker_new(p->e)))
        die("vtep_worker_new");
}

/* The tx pool: frames from the port's host to remote MACs drawn with seed
 * "seed" (another seed: other flows over the same FDB). */
static void tx_frames(struct pipe *p, uint64_t seed)
{
    uint32_t n_dst = p->fdb - 1;
    pipe_alloc(p, FRAME_LEN);
    uint64_t rng = 0x7478000000000000ull ^ p->fdb ^ seed << 32;
    uint8_t src[6], dst[6];
    make_mac(src, MAC_TX_SENDER, 0);
    for (uint32_t k = 0; k < p->pool; k++) {
        uint32_t i = (uint32_t)(rng_next(&rng) % n_dst);
        make_mac(dst, MAC_REMOTE_HOST, i);
        make_frame(p->frames + (size_t)k * FRAME_LEN, dst, src, rng_next(&rng));
        p->pkts[k].len = FRAME_LEN;
        p->expect[k] = (uint16_t)(i % N_REMOTES);
    }
}

/* rx: 8 local ports, community 0 and promiscuous by turns; FDB = one host
 * behind each remote VTEP (learned, seen NOW, community 0) + fdb-4 static
 * MACs spread over the local ports; each frame comes from a remote host on
 * community VNI 102 to a local MAC drawn uniformly. */
static void rx_setup(struct pipe *p)
{
    double t0 = now_ns();
    p->e = engine_new(p->fdb, &p->seg);
    uint16_t *ports = p->rx_ports;
    for (int q = 0; q < N_RX_PORTS; q++) {
        int id = vtep_port_add(p->e, (uint32_t)p->seg, q % 2 ? VTEP_CLASS_PROMISCUOUS : VTEP_CLASS_COMMUNITY);
        if (id < 0)
            die("vtep_port_add: %d", id);
        ports[q] = (uint16_t)id;
    }
    uint32_t n_dst = p->fdb - N_REMOTES;
    for (uint32_t r = 0; r < N_REMOTES; r++)
        fdb_add(p->e, p->seg, MAC_RX_SENDER, r, VTEP_FDB_REMOTE, (uint16_t)r, VTEP_CLASS_COMMUNITY, 0);
    for (uint32_t i = 0; i < n_dst; i++)
        fdb_add(p->e, p->seg, MAC_LOCAL_HOST, i, VTEP_FDB_LOCAL, ports[i % N_RX_PORTS], 0, 1);
    p->build_s = (now_ns() - t0) / 1e9;
    if (vtep_fdb_count(p->e, (uint32_t)p->seg) != (int)p->fdb)
        die("rx FDB holds %d entries, not %u", vtep_fdb_count(p->e, (uint32_t)p->seg), p->fdb);
    rx_frames(p, 0);
    if (!(p->w = vtep_worker_new(p->e)))
        die("vtep_worker_new");
}

/* The rx pool: packets from the remote hosts to local MACs drawn with seed
 * "seed".  Each remote's own tunnel towards us builds them. */
static void rx_frames(struct pipe *p, uint64_t seed)
{
    uint32_t n_dst = p->fdb - N_REMOTES;
    vtep_tunnel_t tun[N_REMOTES];
    for (int r = 0; r < N_REMOTES; r++) {
        vtep_tunnel_params_t tp = {
            .encapsulation = VTEP_ENCAP_VXLAN, .destination_port = 4789,
            .port_min = 49152, .port_max = 65535, .ttl = 64,
        };
        ip4(&tp.local, (uint8_t)(2 + r));
        ip4(&tp.remote, 1);
        memcpy(tp.src_mac, NEXT_HOP_MAC, 6);
        memcpy(tp.dst_mac, UNDERLAY_MAC, 6);
        if (vtep_tunnel_init(&tun[r], &tp))
            die("vtep_tunnel_init");
    }
    pipe_alloc(p, OUTER_LEN);
    uint64_t rng = 0x7278000000000000ull ^ p->fdb ^ seed << 32;
    uint8_t src[6], dst[6], inner[FRAME_LEN];
    for (uint32_t k = 0; k < p->pool; k++) {
        uint32_t i = (uint32_t)(rng_next(&rng) % n_dst);
        uint32_t r = (uint32_t)(rng_next(&rng) % N_REMOTES);
        make_mac(dst, MAC_LOCAL_HOST, i);
        make_mac(src, MAC_RX_SENDER, r);
        make_frame(inner, dst, src, rng_next(&rng));
        int len = vtep_encap(&tun[r], VNI_COMMUNITY0, inner, FRAME_LEN,
                             p->frames + (size_t)k * OUTER_LEN, OUTER_LEN);
        if (len != OUTER_LEN)
            die("vtep_encap: %d", len);
        p->pkts[k].len = OUTER_LEN;
        p->expect[k] = p->rx_ports[i % N_RX_PORTS];
    }
}

/* Run burst number "b"; every frame must give exactly one output and
 * verdict 0.  Returns its io. */
static const struct io *run_burst(struct pipe *p, int tx, uint32_t b)
{
    const struct io *io = &p->io[b];
    int n = tx ? vtep_access_burst(p->w, p->port, io->pkts, p->batch, NOW, io->outs, p->batch, io->verdicts)
               : vtep_underlay_burst(p->w, io->pkts, p->batch, NOW, io->outs, p->batch, io->verdicts);
    uint8_t any = 0;
    for (uint32_t j = 0; j < p->batch; j++)
        any |= io->verdicts[j];
    if (n != (int)p->batch || any)
        die("burst %u: %d outputs for %u frames, verdicts OR %u", b, n, p->batch, any);
    return io;
}

static void pass(struct pipe *p, int tx)
{
    for (uint32_t b = 0; b < p->pool / p->batch; b++)
        run_burst(p, tx, b);
    p->frames_run += p->pool;
}

static void tx_pass(void *ctx) { pass(ctx, 1); }
static void rx_pass(void *ctx) { pass(ctx, 0); }

/* One untimed pass with every output checked against the FDB. */
static void validate(struct pipe *p, int tx)
{
    for (uint32_t b = 0; b < p->pool / p->batch; b++) {
        const struct io *io = run_burst(p, tx, b);
        const vtep_out_t *o = io->outs;
        for (uint32_t j = 0; j < p->batch; j++, o++) {
            uint32_t k = b * p->batch + j;
            const uint8_t *f = io->pkts[j].data;
            int ok = o->pkt == j && o->target == p->expect[k] && o->data_len == FRAME_LEN;
            if (tx)  /* outer IPv4 to 198.18.0.2+remote, header checksum right, community VNI */
                ok = ok && o->kind == VTEP_OUT_UNDERLAY && o->data == f && o->hdr_len == 50
                     && o->hdr[33] == 2 + o->target && vtep_checksum(o->hdr + 14, 20) == 0
                     && (o->hdr[46] << 16 | o->hdr[47] << 8 | o->hdr[48]) == VNI_COMMUNITY0;
            else
                ok = ok && o->kind == VTEP_OUT_PORT && o->data == f + 50 && o->hdr_len == 0;
            if (!ok)
                die("%s output %u of burst %u is wrong", tx ? "tx" : "rx", j, b);
        }
    }
    p->frames_run += p->pool;
}

/* The counters must account for every frame run: all in, all out, no drop,
 * nothing refused by learning. */
static void check_counters(const struct pipe *p, int tx)
{
    vtep_counters_t in, seg;
    if (vtep_counters_read(p->e, tx ? VTEP_COUNTERS_PORT : VTEP_COUNTERS_UNDERLAY, p->port, &in)
        || vtep_counters_read(p->e, VTEP_COUNTERS_SEGMENT, (uint32_t)p->seg, &seg))
        die("vtep_counters_read");
    uint64_t drops = 0;
    for (int d = 0; d < VTEP_DROP_COUNT; d++)
        drops += in.drops[d] + seg.drops[d];
    if (in.rx_packets != p->frames_run || seg.tx_packets != p->frames_run || drops || seg.learn_refused)
        die("%s counters: %lu frames run, rx %lu, tx %lu, drops %lu, learn_refused %lu", tx ? "tx" : "rx",
            (unsigned long)p->frames_run, (unsigned long)in.rx_packets, (unsigned long)seg.tx_packets,
            (unsigned long)drops, (unsigned long)seg.learn_refused);
}

struct stateless {           /* an encap or decap run */
    vtep_tunnel_t tun;
    uint32_t pool;
    uint8_t *frames;         /* inner frames (encap) or underlay packets (decap) */
    uint8_t out[128];
};

static void stateless_setup(struct stateless *s, int decap)
{
    vtep_tunnel_params_t tp = {
        .encapsulation = VTEP_ENCAP_VXLAN, .destination_port = 4789,
        .port_min = 49152, .port_max = 65535, .ttl = 64,
    };
    ip4(&tp.local, 1);
    ip4(&tp.remote, 2);
    memcpy(tp.src_mac, UNDERLAY_MAC, 6);
    memcpy(tp.dst_mac, NEXT_HOP_MAC, 6);
    if (vtep_tunnel_init(&s->tun, &tp))
        die("vtep_tunnel_init");
    s->pool = pool_size(0);
    s->frames = xcalloc(s->pool, OUTER_LEN);
    uint64_t rng = 0x656e636170000000ull;
    uint8_t src[6], dst[6], inner[FRAME_LEN];
    make_mac(src, MAC_TX_SENDER, 0);
    for (uint32_t k = 0; k < s->pool; k++) {
        make_mac(dst, MAC_REMOTE_HOST, (uint32_t)rng_next(&rng));
        make_frame(inner, dst, src, rng_next(&rng));
        /* Each frame checked once: encapsulated, then decapsulated back. */
        vtep_decap_info_t info;
        if (vtep_encap(&s->tun, VNI_COMMUNITY0, inner, FRAME_LEN, s->out, sizeof s->out) != OUTER_LEN
            || vtep_decap(s->out, OUTER_LEN, 4789, 0, &info) != VTEP_DROP_NONE || info.vni != VNI_COMMUNITY0
            || info.inner_len != FRAME_LEN || memcmp(s->out + info.inner_offset, inner, FRAME_LEN))
            die("encap/decap round trip of frame %u", k);
        memcpy(s->frames + (size_t)k * OUTER_LEN, decap ? s->out : inner, decap ? OUTER_LEN : FRAME_LEN);
    }
}

static void encap_pass(void *ctx)
{
    struct stateless *s = ctx;
    for (uint32_t k = 0; k < s->pool; k++)
        if (vtep_encap(&s->tun, VNI_COMMUNITY0, s->frames + (size_t)k * OUTER_LEN, FRAME_LEN, s->out,
                       sizeof s->out) != OUTER_LEN)
            die("vtep_encap of frame %u", k);
}

static void decap_pass(void *ctx)
{
    struct stateless *s = ctx;
    vtep_decap_info_t info;
    for (uint32_t k = 0; k < s->pool; k++)
        if (vtep_decap(s->frames + (size_t)k * OUTER_LEN, OUTER_LEN, 4789, 0, &info) != VTEP_DROP_NONE
            || info.vni != VNI_COMMUNITY0)
            die("vtep_decap of packet %u", k);
}

/* ---- Timing ---- */

struct result {
    double ns[MAX_REPS];     /* ns per frame, one per repetition */
    uint64_t passes;         /* pool passes per repetition */
    double median, min;
    double cpu_share;        /* CPU time / wall time while timing: below ~0.95, others ran on our CPU */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double sorted[MAX_REPS];
    memcpy(sorted, v, (size_t)n * sizeof *v);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/* One warm-up pass (caches, branch predictors, page faults), one to size a
 * repetition at >= opt_min_time, then opt_reps timed repetitions.  The
 * figures are wall time (CLOCK_MONOTONIC); our CPU time is taken alongside
 * only to tell how much of it the machine's other work took from us. */
static void measure(void (*run)(void *), void *ctx, uint32_t frames, struct result *r)
{
    run(ctx);
    double t0 = now_ns();
    run(ctx);
    double one = now_ns() - t0;
    r->passes = (uint64_t)(opt_min_time * 1e9 / (one > 1 ? one : 1)) + 1;
    double wall0 = now_ns(), cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < opt_reps; i++) {
        t0 = now_ns();
        for (uint64_t k = 0; k < r->passes; k++)
            run(ctx);
        r->ns[i] = (now_ns() - t0) / ((double)r->passes * frames);
    }
    r->cpu_share = (clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0) / (now_ns() - wall0);
    r->min = r->ns[0];
    for (int i = 1; i < opt_reps; i++)
        r->min = r->ns[i] < r->min ? r->ns[i] : r->min;
    r->median = median(r->ns, opt_reps);
}

static FILE *out;
static int n_results;

static void emit(const char *scenario, uint32_t batch, uint32_t fdb, uint32_t pool, double build_s,
                 const struct result *r)
{
    fprintf(stderr, "  C      %-6s batch %4u  fdb %8u  pool %6u  median %7.2f  min %7.2f ns/pkt  cpu %3.0f%%\n",
            scenario, batch, fdb, pool, r->median, r->min, 100 * r->cpu_share);
    fprintf(out, "%s\n    {\"scenario\": \"%s\", \"batch\": %u, \"fdb\": %u, \"pool\": %u, "
            "\"passes\": %lu, \"median_ns\": %.3f, \"min_ns\": %.3f, \"cpu_share\": %.3f, "
            "\"fdb_build_s\": %.3f, \"reps_ns\": [",
            n_results++ ? "," : "", scenario, batch, fdb, pool, (unsigned long)r->passes, r->median, r->min,
            r->cpu_share, build_s);
    for (int i = 0; i < opt_reps; i++)
        fprintf(out, "%s%.3f", i ? ", " : "", r->ns[i]);
    fputs("]}", out);
}

/* ---- Scaling: several workers over one engine ---- */

struct lane {                /* one thread: its own worker and pool */
    struct pipe p;
    int tx, cpu;
    pthread_barrier_t *start;
    uint64_t frames;         /* run in the last repetition */
    double wall_ns, cpu_ns;
};

/* Lane "cpu" has frames of its own, drawn with another seed: other flows
 * over the same FDB, as another worker would see.  (The same frames, even
 * out of step, would find the FDB lines in the shared cache for each other.) */
static void lane_init(struct lane *l, const struct pipe *base, int tx, int cpu)
{
    l->p = *base;
    l->p.frames_run = 0;
    (tx ? tx_frames : rx_frames)(&l->p, (uint64_t)cpu + 1);
    if (!(l->p.w = vtep_worker_new(base->e)))
        die("vtep_worker_new");
    pipe_set_batch(&l->p, base->batch);
    l->tx = tx, l->cpu = cpu;
    validate(&l->p, tx);
}

static void lane_free(struct lane *l)
{
    pipe_free_batch(&l->p);
    vtep_worker_free(l->p.w);
    free(l->p.frames), free(l->p.pkts), free(l->p.expect), free(l->p.verdicts);
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(l->cpu, &cpus);
    if (pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus))
        die("cannot pin a thread to CPU %d", l->cpu);
    pass(&l->p, l->tx);  /* warm: caches and page faults, on this CPU */
    pthread_barrier_wait(l->start);
    uint64_t before = l->p.frames_run;
    double t0 = now_ns(), cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    do
        pass(&l->p, l->tx);
    while (now_ns() - t0 < opt_min_time * 1e9);
    l->wall_ns = now_ns() - t0;
    l->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    l->frames = l->p.frames_run - before;
    return NULL;
}

/* "n" lanes started together: frames per microsecond of all of them over the
 * longest one's wall time; "cpu_share" lowered to the least CPU one had. */
static double run_lanes(struct lane *lanes, int n, double *cpu_share)
{
    pthread_barrier_t start;
    pthread_t threads[64];
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int t = 0; t < n; t++) {
        lanes[t].start = &start;
        if (pthread_create(&threads[t], NULL, lane_main, &lanes[t]))
            die("pthread_create");
    }
    uint64_t frames = 0;
    double wall = 0;
    for (int t = 0; t < n; t++) {
        pthread_join(threads[t], NULL);
        frames += lanes[t].frames;
        wall = lanes[t].wall_ns > wall ? lanes[t].wall_ns : wall;
        if (lanes[t].cpu_ns / lanes[t].wall_ns < *cpu_share)
            *cpu_share = lanes[t].cpu_ns / lanes[t].wall_ns;
    }
    pthread_barrier_destroy(&start);
    return frames / wall * 1e3;
}

/* One thread, then opt_threads, by turns, opt_reps times each, over the
 * engine of "base": the machine's speed drifts, so the ratio is taken within
 * each pair and the median of those is the figure.  The counters must
 * account for every frame. */
static void scaling(struct pipe *base, int tx)
{
    const char *scenario = tx ? "tx-scaling" : "rx-scaling";
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (opt_threads > cpus)
        die("--threads %d: this machine has %ld CPUs", opt_threads, cpus);
    struct lane lanes[64];
    for (int t = 0; t < opt_threads; t++)
        lane_init(&lanes[t], base, tx, t);
    double one[MAX_REPS], all[MAX_REPS], ratio[MAX_REPS], cpu_share = 1.0;
    for (int i = 0; i < opt_reps; i++) {
        one[i] = run_lanes(lanes, 1, &cpu_share);
        all[i] = run_lanes(lanes, opt_threads, &cpu_share);
        ratio[i] = all[i] / one[i];
    }
    double m1 = median(one, opt_reps), m2 = median(all, opt_reps), r = median(ratio, opt_reps);
    fprintf(stderr, "  C      %-10s batch %4u  fdb %8u  1 thread %7.2f Mpps  %d threads %7.2f Mpps  ratio %5.2fx"
            "  cpu %3.0f%%\n", scenario, base->batch, base->fdb, m1, opt_threads, m2, r, 100 * cpu_share);
    fprintf(out, "%s\n    {\"scenario\": \"%s\", \"batch\": %u, \"fdb\": %u, \"pool\": %u, \"threads\": %d, "
            "\"one_thread_mpps\": %.3f, \"threads_mpps\": %.3f, \"ratio\": %.3f, \"cpu_share\": %.3f, "
            "\"reps\": [", n_results++ ? "," : "", scenario, base->batch, base->fdb, base->pool, opt_threads,
            m1, m2, r, cpu_share);
    for (int i = 0; i < opt_reps; i++)
        fprintf(out, "%s[%.3f, %.3f]", i ? ", " : "", one[i], all[i]);
    fputs("]}", out);

    struct pipe total = *base;   /* the workers' counters go with them: read them first */
    for (int t = 0; t < opt_threads; t++)
        total.frames_run += lanes[t].p.frames_run;
    check_counters(&total, tx);
    base->frames_run = total.frames_run;
    for (int t = 0; t < opt_threads; t++)
        lane_free(&lanes[t]);
}

/* Whether comma-separated "list" names "name". */
static int wants(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = list; (s = strstr(s, name)); s += n)
        if ((s == list || s[-1] == ',') && (s[n] == ',' || s[n] == 0))
            return 1;
    return 0;
}

/* "a,b,c" -> numbers; returns how many. */
static int parse_list(const char *s, uint32_t *v, int max)
{
    int n = 0;
    for (char *end; *s && n < max; s = *end ? end + 1 : end) {
        unsigned long x = strtoul(s, &end, 10);
        if (end == s || (*end && *end != ','))
            die("bad number list: %s", s);
        v[n++] = (uint32_t)x;
    }
    return n;
}

static void usage(void)
{
    fputs("usage: micro [--scenarios encap,decap,tx,rx,tx-scaling,rx-scaling] [--fdb 100,10000,1000000]\n"
          "             [--batch 32,256] [--reps N] [--min-time SECONDS] [--pool FRAMES]\n"
          "             [--layout worker|engine] [--threads N] [--json FILE]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"scenarios", 1, 0, 's'}, {"fdb", 1, 0, 'f'}, {"batch", 1, 0, 'b'}, {"reps", 1, 0, 'r'},
        {"min-time", 1, 0, 't'}, {"pool", 1, 0, 'p'}, {"layout", 1, 0, 'l'}, {"json", 1, 0, 'j'},
        {"threads", 1, 0, 'n'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *scenarios = "encap,decap,tx,rx", *json = NULL;
    uint32_t fdbs[8] = {100, 10000, 1000000}, batches[8] = {32, 256};
    int n_fdb = 3, n_batch = 2, c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's': scenarios = optarg; break;
        case 'f': n_fdb = parse_list(optarg, fdbs, 8); break;
        case 'b': n_batch = parse_list(optarg, batches, 8); break;
        case 'r': opt_reps = atoi(optarg); break;
        case 't': opt_min_time = atof(optarg); break;
        case 'p': opt_pool = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'l':
            if (strcmp(optarg, "worker") && strcmp(optarg, "engine"))
                usage();
            opt_engine_layout = !strcmp(optarg, "engine");
            break;
        case 'j': json = optarg; break;
        case 'n': opt_threads = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || opt_reps < 1 || opt_reps > MAX_REPS || opt_min_time <= 0 || opt_threads < 2
        || opt_threads > 64)
        usage();
    for (int i = 0; i < n_fdb; i++)
        if (fdbs[i] < 2 * N_REMOTES)
            die("FDB size %u is below %d", fdbs[i], 2 * N_REMOTES);
    for (int i = 0; i < n_batch; i++)
        if (!batches[i] || batches[i] > 8192 || pool_size(0) % batches[i])
            die("batch %u must divide the pool", batches[i]);
    out = json ? fopen(json, "w") : stdout;
    if (!out)
        die("%s: %s", json, strerror(errno));
    fprintf(out, "{\"driver\": \"c\", \"reps\": %d, \"min_time_s\": %g, \"layout\": \"%s\", \"results\": [",
            opt_reps, opt_min_time, opt_engine_layout ? "engine" : "worker");

    struct result r;
    for (int decap = 0; decap < 2; decap++) {
        if (!wants(scenarios, decap ? "decap" : "encap"))
            continue;
        struct stateless s;
        stateless_setup(&s, decap);
        measure(decap ? decap_pass : encap_pass, &s, s.pool, &r);
        emit(decap ? "decap" : "encap", 0, 0, s.pool, 0, &r);
        free(s.frames);
    }
    for (int i = 0; i < n_fdb; i++) {
        for (int tx = 1; tx >= 0; tx--) {
            int plain = wants(scenarios, tx ? "tx" : "rx"), scaled = wants(scenarios, tx ? "tx-scaling" : "rx-scaling");
            if (!plain && !scaled)
                continue;
            struct pipe p = {.fdb = fdbs[i], .pool = pool_size(fdbs[i])};
            (tx ? tx_setup : rx_setup)(&p);
            for (int j = 0; j < n_batch; j++) {
                pipe_set_batch(&p, batches[j]);
                validate(&p, tx);
                if (plain) {
                    measure(tx ? tx_pass : rx_pass, &p, p.pool, &r);
                    check_counters(&p, tx);
                    emit(tx ? "tx" : "rx", p.batch, p.fdb, p.pool, p.build_s, &r);
                }
                if (scaled)
                    scaling(&p, tx);
                pipe_free_batch(&p);
            }
            pipe_free(&p);
        }
    }
    fputs("\n]}\n", out);
    return fclose(out) ? 1 : 0;
}
