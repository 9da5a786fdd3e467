/* Receive coalescing toward hosts (what the kernel calls GRO).
 *
 * A host's TCP hands its NIC (here: a veth or TAP) 64 KB at a time; the
 * sending VTEP cuts that into MSS-sized segments for the underlay.  The
 * kernel's own VXLAN device glues them together again before the receiving
 * host sees them, so that host's TCP pays once per 64 KB, not once per
 * segment.  vtep does the same on access ports that take a virtio-net
 * header: consecutive decapsulated segments of one TCP flow in a burst go
 * out as one super-frame (VTEP_GSO_TCPV4/TCPV6 with their MSS), which the
 * host takes whole, as from a local TCP's TSO.
 *
 * Only what a TSO cut can produce is joined: untagged IPv4 without options
 * or fragments, or IPv6 without extension headers; TCP with ACK and no
 * other flag but PSH on the last segment; payloads of one size but the
 * last; the same addresses, ports, IP fields, acknowledgement, window and
 * options (timestamps included), and sequence numbers that follow.  Each
 * segment's TCP checksum is verified first: the super-frame goes out with
 * its checksum left to finish (VTEP_VNET_NEEDS_CSUM), which the receiving
 * stack trusts, so a corrupted segment must not be vouched for. */
#ifndef VTEP_GRO_H
#define VTEP_GRO_H

#include <stdint.h>
#include "offload.h"

enum { VTEP_GRO_MAX_SEGS = 64, VTEP_GRO_MAX_LEN = 65535 };

typedef struct vtep_gro_seg {
    const uint8_t *frame;
    uint32_t hdr_len;         /* Ethernet, IP and TCP headers */
    uint32_t payload_len;
    uint32_t seq;
    uint8_t ipv6;
    uint8_t psh;
} vtep_gro_seg_t;

/* 1 if the "len" bytes at "frame" are a TCP segment that may be joined,
 * its checksum right (see above); fills "seg". */
int vtep_gro_parse(const uint8_t *frame, uint32_t len, vtep_gro_seg_t *seg);

/* 1 if "next" continues the super-frame that starts with "first", ends
 * with "last" and holds "payload" bytes so far. */
int vtep_gro_follows(const vtep_gro_seg_t *first, const vtep_gro_seg_t *last, const vtep_gro_seg_t *next,
                     uint32_t payload);

/* The super-frame of "payload" bytes from "first" to "last": its
 * virtio-net header, and its headers in "hdr" (first->hdr_len bytes):
 * first's, with the lengths of the whole, last's PSH, and the TCP checksum
 * holding the pseudo-header sum for the receiver to finish. */
void vtep_gro_headers(const vtep_gro_seg_t *first, const vtep_gro_seg_t *last, uint32_t payload,
                      struct vtep_vnet_hdr *vnet, uint8_t *hdr);

#endif
