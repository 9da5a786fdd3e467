/* Packet I/O handles, as the worker loops see them (the bindings see only
 * the open/close functions in vtep.h).
 *
 * Receive is two steps so that outputs can point into received frames:
 * vtep_io_rx() lends up to "max" frames, the loop runs them through the
 * pipeline and copies every output into a TX slot, then vtep_io_rx_done()
 * gives the frames back.  Transmit copies into a TX slot (AF_PACKET) or
 * writes at once (TAP); vtep_io_flush() sends what the slots hold with one
 * syscall. */
#ifndef VTEP_IO_H
#define VTEP_IO_H

#include <sys/uio.h>
#include "util.h"
#include "vtep.h"

enum { VTEP_IO_AFPACKET, VTEP_IO_TAP };

struct vtep_io {
    int kind;
    int fd;
    uint8_t vnet;             /* frames carry a virtio-net header (offload.h) */
    uint8_t tunnel;           /* the underlay: super-packets are cut as they come (vtep_udp_split) */
    uint32_t frame_size;      /* AF_PACKET RX and TX slot, or TAP buffer */
    uint32_t frames;          /* TX slots, or TAP buffers */
    uint32_t rx_frames;       /* AF_PACKET RX slots */
    uint32_t rx_head;         /* next RX slot to look at */
    uint32_t rx_lent;         /* slots lent by the last vtep_io_rx() */
    /* AF_PACKET: the two rings, one mapping. */
    uint8_t *map;
    size_t map_len;
    uint8_t *rx_ring, *tx_ring;
    uint32_t tx_head;
    uint32_t tx_queued;       /* slots filled and not yet handed to the kernel */
    int ifindex;              /* AF_PACKET: the link */
    int super_fd;             /* AF_PACKET with vnet: a socket without rings for super-frames
                               * (a TX ring takes no frame bigger than its slots), or -1 */
    uint32_t max_frame;       /* AF_PACKET: the link's MTU + Ethernet header (vtep_io_read_mtu) */
    uint8_t flush_due;        /* on its loop's list of handles to flush */
    /* TAP: one buffer per frame of a burst.  AF_PACKET: one buffer for a
     * frame too big for an RX slot, which the kernel queues on the socket
     * (TP_STATUS_COPY). */
    uint8_t *bufs;
    /* The underlay with a virtio-net header: the datagrams of the last
     * super-packet cut, and how many of them the next bursts still lend. */
    uint8_t *split;
    vtep_pkt_t *split_pkts;
    uint32_t split_next, split_left;
};

uint32_t vtep_afpacket_rx(vtep_io_t *io, vtep_pkt_t *pkts, uint32_t max, uint32_t *oversize);
void vtep_afpacket_rx_done(vtep_io_t *io);
int vtep_afpacket_tx(vtep_io_t *io, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len);
void vtep_afpacket_flush(vtep_io_t *io);
uint32_t vtep_tap_rx(vtep_io_t *io, vtep_pkt_t *pkts, uint32_t max, uint32_t *oversize);
int vtep_tap_tx(vtep_io_t *io, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len);
int vtep_afpacket_tx_super(vtep_io_t *io, const struct iovec *iov, int n);
int vtep_tap_tx_super(vtep_io_t *io, const struct iovec *iov, int n);

/* Lends up to "max" received frames in "pkts"; frames too big to take are
 * given back at once and counted in "*oversize".  Returns how many. */
VTEP_INLINE uint32_t vtep_io_rx(vtep_io_t *io, vtep_pkt_t *pkts, uint32_t max, uint32_t *oversize)
{
    return io->kind == VTEP_IO_AFPACKET ? vtep_afpacket_rx(io, pkts, max, oversize)
                                        : vtep_tap_rx(io, pkts, max, oversize);
}

VTEP_INLINE void vtep_io_rx_done(vtep_io_t *io)
{
    if (io->kind == VTEP_IO_AFPACKET)
        vtep_afpacket_rx_done(io);
}

/* Queue "hdr" then "data" as one frame ("hdr" may be NULL when "hdr_len"
 * is 0: a frame forwarded as it came).  0, -ENOBUFS (no free slot) or
 * -EMSGSIZE (larger than a slot, or than an AF_PACKET link's MTU). */
VTEP_INLINE int vtep_io_tx(vtep_io_t *io, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data,
                           uint32_t len)
{
    return io->kind == VTEP_IO_AFPACKET ? vtep_afpacket_tx(io, hdr, hdr_len, data, len)
                                        : vtep_tap_tx(io, hdr, hdr_len, data, len);
}

/* Send one frame gathered from "iov", its virtio-net header first (handles
 * with "vnet" only), after the frames queued before it.  0, -ENOBUFS or
 * -EMSGSIZE, as vtep_io_tx. */
VTEP_INLINE int vtep_io_tx_super(vtep_io_t *io, const struct iovec *iov, int n)
{
    return io->kind == VTEP_IO_AFPACKET ? vtep_afpacket_tx_super(io, iov, n) : vtep_tap_tx_super(io, iov, n);
}

VTEP_INLINE void vtep_io_flush(vtep_io_t *io)
{
    if (io->kind == VTEP_IO_AFPACKET)
        vtep_afpacket_flush(io);
}

/* Frames the kernel dropped because the RX ring was full, since the last
 * call (AF_PACKET; 0 for TAP). */
uint32_t vtep_io_kernel_drops(vtep_io_t *io);
/* Reads the link's MTU again (AF_PACKET), for the TX length check. */
void vtep_io_read_mtu(vtep_io_t *io);

#endif
