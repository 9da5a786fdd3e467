/* libFuzzer target: the pipeline as a whole.  A sequence of bursts on one
 * engine, alternating between access ports and the underlay as the input
 * says, so that what one frame teaches (MAC learning, moves, the table
 * limit) and the clock (ageing) shape what later frames do; now and then
 * the control thread expires or flushes the FDB.  After every burst: the
 * invariants of fuzz_check_burst, each output sent as the worker loop sends
 * it, static entries untouched, no segment above its limit.
 *
 * Input: a control byte (bit 0: IPv6 underlay), then records, each an op
 * byte and, unless it is a control-thread action, a 2-byte length
 * (little-endian) and the frame.  Op bits: 0 underlay (else an access
 * port), 1-2 role and 3 segment of the access port, 4-5 clock step before
 * the burst, 6 control-thread action instead of a frame (bit 1: expire,
 * else flush learned entries of the segment of bit 3), 7 the frame joins
 * the burst before it (same port), up to MAX_BURST frames. */
#include "fuzz_common.h"

enum { MAX_BURST = 8, MAX_FDB = 16 };

static const uint32_t clock_steps[4] = {0, 1, 301, 3600};  /* 301: past the 300 s ageing */

struct burst {
    uint32_t port;            /* UINT32_MAX: the underlay */
    uint32_t n;
    vtep_pkt_t pkts[MAX_BURST];
};

static void run_burst(fuzz_vtep_t *v, struct burst *b, uint32_t now)
{
    vtep_out_t outs[FUZZ_MAX_OUT];
    uint8_t verdicts[MAX_BURST];
    if (!b->n)
        return;
    int n = b->port == UINT32_MAX ? vtep_underlay_burst(v->w, b->pkts, b->n, now, outs, FUZZ_MAX_OUT, verdicts)
                                  : vtep_access_burst(v->w, b->port, b->pkts, b->n, now, outs, FUZZ_MAX_OUT, verdicts);
    fuzz_check_burst(v, b->port, b->pkts, b->n, outs, n, verdicts);
    for (int i = 0; i < n; i++)
        fuzz_send(&outs[i], &b->pkts[outs[i].pkt]);
    for (uint32_t i = 0; i < b->n; i++)
        fuzz_free((uint8_t *)b->pkts[i].data);
    b->n = 0;
    fuzz_check_static(v, now);
    for (int s = 0; s < FUZZ_SEGMENTS; s++)
        CHECK(vtep_fdb_count(v->e, v->segs[s]) <= MAX_FDB);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    fuzz_vtep_t v;
    fuzz_vtep_init(&v, fuzz_u8(&in) & 1 ? 6 : 4, MAX_FDB);
    struct burst b = {.n = 0};
    uint32_t now = 0;
    while (in.left) {
        uint8_t op = fuzz_u8(&in);
        uint32_t seg = op >> 3 & 1;
        if (!(op >> 7) || b.n == MAX_BURST) {
            run_burst(&v, &b, now);
            now += clock_steps[op >> 4 & 3];
            b.port = op & 1 ? UINT32_MAX : (uint32_t)v.ports[seg][op >> 1 & 3];
        }
        if (op >> 6 & 1) {
            run_burst(&v, &b, now);
            int removed = op >> 1 & 1 ? vtep_fdb_expire(v.e, v.segs[seg], now) : vtep_fdb_flush(v.e, v.segs[seg], 0);
            CHECK(removed >= 0);
            fuzz_check_static(&v, now);
            continue;
        }
        size_t len = fuzz_u16(&in);
        uint8_t *frame = fuzz_take(&in, &len);
        b.pkts[b.n++] = (vtep_pkt_t){.data = frame, .len = (uint32_t)len};
    }
    run_burst(&v, &b, now);
    fuzz_vtep_free(&v);
    return 0;
}
