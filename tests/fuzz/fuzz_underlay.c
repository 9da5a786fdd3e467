/* libFuzzer target: underlay decap.  One frame from the underlay through
 * vtep_decap, the flow hash and the underlay burst of an engine of either
 * family.  Beyond "no crash, no over-read": decap's inner frame lies inside
 * the packet; a checksum the kernel vouched for (CSUM_OK) only ever makes
 * decap accept more; the outputs keep the invariants of fuzz_check_burst
 * and are sent as the worker loop sends them (fuzz_send).
 *
 * Input: a control byte, then the frame.  Control bits: 0 IPv6 underlay,
 * 1 CSUM_OK, 2 VLAN, 3 CSUM_PARTIAL, 4-7 the clock. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t ctl = fuzz_u8(&in);
    size_t len = SIZE_MAX;
    uint8_t *frame = fuzz_take(&in, &len);

    vtep_decap_info_t info;
    vtep_drop_t strict = vtep_decap(frame, len, 4789, 0, &info);
    if (strict == VTEP_DROP_NONE)
        CHECK(info.inner_len >= 14 && info.inner_offset + (size_t)info.inner_len <= len);
    vtep_drop_t trusting = vtep_decap(frame, len, 4789, VTEP_PKT_CSUM_OK, &info);
    CHECK(trusting < VTEP_DROP_COUNT && (strict != VTEP_DROP_NONE || trusting == VTEP_DROP_NONE));
    CHECK(vtep_flow_hash(frame, len) == vtep_flow_hash(frame, len));

    fuzz_vtep_t v;
    fuzz_vtep_init(&v, ctl & 1 ? 6 : 4, 64);
    vtep_pkt_t pkt = {.data = frame, .len = (uint32_t)len,
                      .flags = (ctl >> 1 & 1 ? VTEP_PKT_CSUM_OK : 0) | (ctl >> 2 & 1 ? VTEP_PKT_VLAN : 0)
                               | (ctl >> 3 & 1 ? VTEP_PKT_CSUM_PARTIAL : 0)};
    vtep_out_t outs[FUZZ_MAX_OUT];
    uint8_t verdict;
    int n = vtep_underlay_burst(v.w, &pkt, 1, ctl >> 4, outs, FUZZ_MAX_OUT, &verdict);
    fuzz_check_burst(&v, UINT32_MAX, &pkt, 1, outs, n, &verdict);
    for (int i = 0; i < n; i++)
        fuzz_send(&outs[i], &pkt);
    fuzz_vtep_free(&v);
    fuzz_free(frame);
    return 0;
}
