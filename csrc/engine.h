/* Engine internals shared by the table code (engine.c) and the pipeline
 * (pipeline.c).  Not seen by the bindings. */
#ifndef VTEP_ENGINE_H
#define VTEP_ENGINE_H

#include <pthread.h>
#include "vtep.h"
#include "fdb.h"
#include "map.h"

struct vtep_port {
    uint8_t in_use;
    uint8_t pvlan_class;
    uint16_t segment;
};

/* A port's BUM rate limit: GCRA, the virtual-scheduling form of a token
 * bucket, in one word.  Workers that share the port through PACKET_FANOUT
 * share its bucket: a frame is admitted by one compare-and-swap of "tat".
 * Per-worker buckets of rate/workers would be cheaper but wrong, since the
 * fanout hash puts one flow (a storm) on one worker.  Only BUM frames from a
 * limited port touch it; its own cache line keeps ports apart. */
struct vtep_bum_limit {
    uint64_t tat;                 /* atomic: when the next frame is due at the rate, ns */
    uint64_t interval;            /* ns per frame at the rate; 0: no limit */
    uint64_t tolerance;           /* how far "tat" may run ahead of now: (burst - 1) * interval */
} __attribute__((aligned(64)));

struct vtep_remote {
    uint8_t in_use;
    uint8_t resolved;             /* next hop MAC known */
    vtep_addr_t addr;
    vtep_tunnel_t tunnel[2];      /* by vtep_encap_t */
};

struct vtep_segment {
    uint8_t in_use;
    uint8_t encapsulation;
    uint8_t mac_learning;
    uint8_t overhead;             /* outer bytes above the inner frame, Ethernet excluded */
    uint32_t class_vni[VTEP_CLASS_COUNT];  /* VNI each sender class uses, or VTEP_VNI_NONE */
    uint16_t *ports;              /* flood list: the segment's ports */
    uint32_t n_ports;
    uint16_t *remotes;            /* head-end replication list */
    uint32_t n_remotes;
    uint64_t *remote_bits;        /* the same list as a bitmap, for the source check */
    vtep_fdb_t fdb;
};

struct vtep_engine {
    vtep_engine_params_t p;
    struct vtep_port *ports;
    struct vtep_bum_limit *bum;   /* by port id */
    struct vtep_segment *segments;
    struct vtep_remote *remotes;
    uint32_t n_remotes;           /* ids in use: 0 .. n_remotes-1 */
    vtep_map_t vni_map;           /* vtep_vni_key() -> segment << 8 | sender class */
    vtep_map_t remote_map;        /* vtep_addr_key() -> remote id */
    vtep_worker_t *workers;       /* list, for summing counters and pausing */
    uint32_t n_blocks;            /* counter blocks per worker */
    /* Pausing (control thread): hold "pause_lock", raise "pausing", wake
     * every worker and take each one's "lock".  A loop holds its worker's
     * lock while it runs and lets go only when it sees "pausing"; it then
     * waits on "pause_lock", so it cannot take its lock back before the
     * change is done. */
    pthread_mutex_t pause_lock;
    int pausing;                  /* atomic: a pause is wanted or held */
    int pause_depth;              /* control thread only: nesting */
};

/* Counter blocks: ports first, then the underlay, then segments. */
struct vtep_worker {
    vtep_engine_t *engine;
    vtep_worker_t *next;
    vtep_counters_t *blocks;
    pthread_mutex_t lock;         /* held by whoever runs this worker's bursts */
    int wake_fd;                  /* eventfd a paused loop polls, or -1 */
    uint8_t probe;                /* learns nothing, counts for no one */
    uint64_t now_ns;              /* the clock of rate limits (vtep_worker_set_clock) */
};

/* Between bursts, a loop calls this: it gives its worker up while the
 * control thread changes tables.  Returns whether it did (the loop then
 * looks at its own tables again). */
int vtep_worker_yield(vtep_worker_t *w);

VTEP_INLINE vtep_counters_t *vtep_port_block(vtep_worker_t *w, uint32_t port)
{
    return &w->blocks[port];
}
VTEP_INLINE vtep_counters_t *vtep_underlay_block(vtep_worker_t *w)
{
    return &w->blocks[w->engine->p.max_ports];
}
VTEP_INLINE vtep_counters_t *vtep_segment_block(vtep_worker_t *w, uint32_t seg)
{
    return &w->blocks[w->engine->p.max_ports + 1 + seg];
}

/* Map keys are nonzero. */
VTEP_INLINE uint64_t vtep_vni_key(uint8_t encapsulation, uint32_t vni)
{
    return (uint64_t)1 << 32 | (uint64_t)encapsulation << 24 | vni;
}

/* An address folded into a nonzero 64-bit key; hits are confirmed against
 * the remote's full address. */
VTEP_INLINE uint64_t vtep_addr_key(const uint8_t *bytes, int family)
{
    uint64_t a, b = 0;
    memcpy(&a, bytes, 8);
    if (family == 6)
        memcpy(&b, bytes + 8, 8);
    else
        a &= 0xffffffffull;  /* only the first 4 bytes are the address */
    uint64_t k = (a ^ (b * 0x9e3779b97f4a7c15ull)) + (uint64_t)family;
    return k ? k : 1;
}

VTEP_INLINE int vtep_addr_len(int family)
{
    return family == 6 ? 16 : 4;
}

#endif
