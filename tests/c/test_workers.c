/* Two workers, two threads, one engine: what the daemon's threads will do.
 * Each worker bursts frames from its own port (learning new MACs as it goes,
 * so both contend for the segment's FDB) to a MAC behind a remote VTEP.
 * Afterwards the summed counters must account for every frame exactly, each
 * worker's own share must be its own, and every MAC must be learned where it
 * was seen. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "vtep.h"

enum { WORKERS = 2, ROUNDS = 2000, BURST = 32, MACS = 64, FRAME_LEN = 60 };

static vtep_engine_t *engine;
static int seg_id, ports[WORKERS];
static const uint8_t remote_mac[6] = {2, 0, 0, 0, 0x99, 1};

struct job {
    vtep_worker_t *w;
    int port;
    long forwarded;
};

static void *run(void *arg)
{
    struct job *job = arg;
    static __thread uint8_t frames[MACS][FRAME_LEN];
    vtep_pkt_t pkts[BURST];
    vtep_out_t outs[BURST];
    uint8_t verdicts[BURST];
    for (int m = 0; m < MACS; m++) {  /* source MAC: worker, then MAC number */
        memcpy(frames[m], remote_mac, 6);
        uint8_t src[6] = {2, 0, 0, (uint8_t)job->port, 0, (uint8_t)m};
        memcpy(frames[m] + 6, src, 6);
        frames[m][12] = 0x88, frames[m][13] = 0xb5;  /* local experimental EtherType */
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BURST; i++)
            pkts[i] = (vtep_pkt_t){.data = frames[(r * BURST + i) % MACS], .len = FRAME_LEN};
        int n = vtep_access_burst(job->w, (uint32_t)job->port, pkts, BURST, (uint32_t)r / 100, outs, BURST, verdicts);
        for (int i = 0; i < n; i++)
            job->forwarded += outs[i].kind == VTEP_OUT_UNDERLAY && verdicts[outs[i].pkt] == VTEP_DROP_NONE;
    }
    return NULL;
}

int main(void)
{
    vtep_engine_params_t p = {.max_ports = 8, .max_segments = 2, .max_remotes = 2, .underlay_mtu = 1500,
                              .destination_port = 4789, .port_min = 49152, .port_max = 65535, .ttl = 64};
    int err, failures = 0;
    p.local = (vtep_addr_t){.family = 4, .bytes = {198, 18, 0, 1}};
    engine = vtep_engine_new(&p, &err);
    vtep_segment_params_t sp = {.encapsulation = VTEP_ENCAP_VXLAN, .vni = 5000, .isolated_vni = VTEP_VNI_NONE,
                                .mac_learning = 1, .fdb_ageing_sec = 300, .maximum_fdb_entries = 1024};
    seg_id = vtep_segment_add(engine, &sp);
    vtep_addr_t ra = {.family = 4, .bytes = {198, 18, 0, 2}};
    int remote = vtep_remote_add(engine, &ra);
    vtep_remote_set_neighbour(engine, (uint32_t)remote, remote_mac);
    vtep_fdb_entry_t en = {.kind = VTEP_FDB_REMOTE, .target = (uint16_t)remote, .is_static = 1};
    memcpy(en.mac, remote_mac, 6);
    vtep_fdb_add(engine, (uint32_t)seg_id, &en);

    pthread_t threads[WORKERS];
    struct job jobs[WORKERS];
    for (int t = 0; t < WORKERS; t++) {
        ports[t] = vtep_port_add(engine, (uint32_t)seg_id, VTEP_CLASS_PROMISCUOUS);
        jobs[t] = (struct job){.w = vtep_worker_new(engine), .port = ports[t]};
    }
    for (int t = 0; t < WORKERS; t++)
        pthread_create(&threads[t], NULL, run, &jobs[t]);
    for (int t = 0; t < WORKERS; t++)
        pthread_join(threads[t], NULL);

    const long per_worker = (long)ROUNDS * BURST, total = WORKERS * per_worker;
    vtep_counters_t seg, underlay, port;
    vtep_counters_read(engine, VTEP_COUNTERS_SEGMENT, (uint32_t)seg_id, &seg);
    vtep_counters_read(engine, VTEP_COUNTERS_UNDERLAY, 0, &underlay);
#define EXPECT(cond)                                                  \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                               \
        }                                                             \
    } while (0)
    EXPECT(seg.rx_packets == (uint64_t)total && seg.tx_packets == (uint64_t)total);
    EXPECT(underlay.tx_packets == (uint64_t)total && underlay.tx_bytes == (uint64_t)total * (FRAME_LEN + 50));
    for (int t = 0; t < WORKERS; t++) {
        vtep_counters_read(engine, VTEP_COUNTERS_PORT, (uint32_t)ports[t], &port);
        EXPECT(port.rx_packets == (uint64_t)per_worker && port.rx_bytes == (uint64_t)per_worker * FRAME_LEN);
        EXPECT(jobs[t].forwarded == per_worker);
        for (int d = 0; d < VTEP_DROP_COUNT; d++)
            EXPECT(port.drops[d] == 0);
    }
    /* Every MAC was seen hundreds of times: each is learned, on its own port. */
    EXPECT(vtep_fdb_count(engine, (uint32_t)seg_id) == 1 + WORKERS * MACS);
    for (int t = 0; t < WORKERS; t++)
        for (int m = 0; m < MACS; m++) {
            uint8_t mac[6] = {2, 0, 0, (uint8_t)ports[t], 0, (uint8_t)m};
            vtep_fdb_entry_t got;
            EXPECT(vtep_fdb_get(engine, (uint32_t)seg_id, mac, ROUNDS / 100, &got) == 0
                   && got.kind == VTEP_FDB_LOCAL && got.target == ports[t]);
        }
    printf("workers: %d threads x %ld frames through one engine: %s\n", WORKERS, per_worker,
           failures ? "FAIL" : "counters and FDB exact");
    vtep_engine_free(engine);
    return failures != 0;
}
