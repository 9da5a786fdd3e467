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
#include <sys/uio.h>
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

/* Tunnel super-packets (UDP GSO across the underlay).
 *
 * Cutting a host's super-frame into segments is cheap; what costs is each
 * segment then crossing the kernel on its own: the underlay veth, the
 * receiver's ring and its IP layer.  So vtep sends the tunnel packets of a
 * super-frame as one UDP super-packet (VTEP_GSO_UDP_L4): the outer headers
 * once, then the datagrams' payloads one after another, each a VXLAN header
 * and a whole segment, all of one size but the last.  Whoever must cut it
 * -- the kernel before a NIC, or a kernel VXLAN socket -- gets exactly the
 * datagrams vtep would have sent one by one (with a UDP checksum: the
 * kernel's UDP segmentation always computes one).  A receiving vtep takes
 * it whole through its own virtio-net header and cuts it itself
 * (vtep_udp_split), so the kernel handles 64 KB once. */
enum { VTEP_PACK_MAX_SEGS = 64 };
typedef int (*vtep_emit_iov_fn)(void *ctx, const struct iovec *iov, int n);

/* Cut super-frame "frame" as vtep_gso_segment does and pack the tunnel
 * packets ("outer": vtep_encap's headers for the whole frame) into UDP
 * super-packets of at most VTEP_PACK_MAX_SEGS datagrams and 64 KB.  For
 * each calls emit(ctx, iov, n): iov[0] its virtio-net header, iov[1] its
 * outer headers (to the UDP header), then the datagrams' headers and
 * payloads.  Returns the number of super-packets, the first failed emit's
 * error, -EPROTONOSUPPORT if "outer" is not UDP, or -EINVAL. */
int vtep_gso_pack(const uint8_t *outer, uint32_t outer_len, const uint8_t *frame, uint32_t len,
                  uint32_t hdr_len, uint32_t gso_size, vtep_emit_iov_fn emit, void *ctx);

/* Cut UDP super-packet "frame" (its datagrams carry "gso_size" payload
 * bytes each, the last one fewer) into the datagrams it stands for,
 * written one after another into "out" ("room" bytes), and describe them
 * in "pkts" (at most "max").  Returns how many; 0 if "frame" is not one vtep
 * can cut, or they do not fit. */
uint32_t vtep_udp_split(const uint8_t *frame, uint32_t len, uint32_t gso_size, uint8_t *out, uint32_t room,
                        vtep_pkt_t *pkts, uint32_t max);

#endif
