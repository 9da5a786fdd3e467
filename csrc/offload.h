/* Offloads the kernel leaves to whoever transmits a frame: unfinished
 * checksums and segmentation.
 *
 * A frame that crosses a veth (or leaves a TAP) keeps the state a NIC
 * would finish: a TCP/UDP checksum holding only its pseudo-header sum
 * (CHECKSUM_PARTIAL) and, from a host's TCP, one super-frame of up to 64 KB
 * to be cut into MSS-sized segments (GSO).  The kernel describes both in a
 * virtio-net header (PACKET_VNET_HDR, IFF_VNET_HDR).  vtep finishes them
 * itself: checksums as frames are received, segmentation when a frame is
 * sent, so a super-frame goes through the pipeline once and is encapsulated
 * once, and only the copies into the TX ring are per segment. */
#ifndef VTEP_OFFLOAD_H
#define VTEP_OFFLOAD_H

#include <stdint.h>
#include "vtep.h"
#include "vtep_packet.h"

/* The virtio-net header before each frame (struct virtio_net_hdr, host
 * byte order as the kernel uses it without VIRTIO_NET_F_VERSION_1 on
 * little-endian machines). */
struct vtep_vnet_hdr {
    uint8_t flags;            /* VTEP_VNET_NEEDS_CSUM | VTEP_VNET_DATA_VALID */
    uint8_t gso_type;         /* VTEP_GSO_*, with 0x80 for ECN */
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};
enum { VTEP_VNET_HDR_LEN = 10, VTEP_VNET_NEEDS_CSUM = 1, VTEP_VNET_DATA_VALID = 2, VTEP_VNET_GSO_ECN = 0x80 };

/* Take frame "p" (its data writable) as the virtio-net header at "vnet"
 * (unaligned) describes it: finish its checksum now, or note it as a
 * super-frame to cut when sent.  0 if it is a super-frame vtep cannot cut. */
int vtep_vnet_take(vtep_pkt_t *p, const void *vnet);

#endif
