/* libFuzzer target: access-port classify.  One frame from an access port of
 * either family's engine, either segment and any role, as the I/O layer
 * hands it over: with the flags AF_PACKET sets and, from an offloading port
 * (TAP, PACKET_VNET_HDR), after vtep_vnet_take of its virtio-net header
 * (checksum to finish, or a GSO super-frame).  The outputs must keep the
 * invariants of fuzz_check_burst and are then sent as the worker loop sends
 * them (fuzz_send: checksums finished, super-frames cut and checked).
 *
 * Input: a control byte, then (if it says so) the 10-byte virtio-net
 * header, then the frame.  Control bits: 0 IPv6 underlay, 1 NVGRE segment,
 * 2-3 role, 4 virtio-net header, 5 CSUM_PARTIAL, 6 VLAN, 7 CSUM_OK. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t ctl = fuzz_u8(&in), vnet[VTEP_VNET_HDR_LEN] = {0};
    int has_vnet = ctl >> 4 & 1;
    for (int i = 0; has_vnet && i < VTEP_VNET_HDR_LEN; i++)
        vnet[i] = fuzz_u8(&in);
    size_t len = SIZE_MAX;
    uint8_t *frame = fuzz_take(&in, &len);

    fuzz_vtep_t v;
    fuzz_vtep_init(&v, ctl & 1 ? 6 : 4, 64);
    vtep_pkt_t pkt = {.data = frame, .len = (uint32_t)len,
                      .flags = (ctl >> 5 & 1 ? VTEP_PKT_CSUM_PARTIAL : 0) | (ctl >> 6 & 1 ? VTEP_PKT_VLAN : 0)
                               | (ctl >> 7 ? VTEP_PKT_CSUM_OK : 0)};
    /* A frame vtep_vnet_take refuses is dropped by the I/O layer. */
    if (!has_vnet || vtep_vnet_take(&pkt, vnet)) {
        if (pkt.gso_size)
            CHECK(pkt.gso_hdr_len > 0 && pkt.gso_hdr_len < pkt.len);
        uint32_t port = (uint32_t)v.ports[ctl >> 1 & 1][ctl >> 2 & 3];
        vtep_out_t outs[FUZZ_MAX_OUT];
        uint8_t verdict;
        int n = vtep_access_burst(v.w, port, &pkt, 1, 0, outs, FUZZ_MAX_OUT, &verdict);
        fuzz_check_burst(&v, port, &pkt, 1, outs, n, &verdict);
        for (int i = 0; i < n; i++)
            fuzz_send(&outs[i], &pkt);
    }
    fuzz_vtep_free(&v);
    fuzz_free(frame);
    return 0;
}
