/* TAP I/O: the "wire" side of a TAP device, as a VM's NIC would see it.
 *
 * The kernel offers no batched read or write on a TAP file descriptor
 * (short of vhost-net), so this backend costs one read per received frame
 * and one write per sent frame: the one place vtep makes a syscall per
 * packet.  AF_PACKET ports have no such cost.  Like a virtio NIC, the TAP
 * takes checksum and TCP segmentation offload (IFF_VNET_HDR): the kernel
 * hands over 64 KB TCP super-frames with their checksums unfinished, which
 * vtep finishes (offload.h), so one read carries up to 64 KB. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include "io.h"
#include "offload.h"

enum { TAP_BUFFERS = 256 };  /* the largest burst a loop asks for */

vtep_io_t *vtep_io_tap_open(const char *ifname, int multiqueue, uint32_t frame_size, int *err)
{
    struct ifreq ifr = {0};
    if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ) {
        *err = -EINVAL;
        return NULL;
    }
    vtep_io_t *io = calloc(1, sizeof *io);
    if (!io) {
        *err = -ENOMEM;
        return NULL;
    }
    io->kind = VTEP_IO_TAP;
    io->super_fd = -1;  /* super-frames go through the TAP's own fd */
    io->frame_size = frame_size ? frame_size : 2048;
    io->frames = TAP_BUFFERS;
    io->bufs = malloc((size_t)TAP_BUFFERS * io->frame_size);
    io->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (!io->bufs || io->fd < 0) {
        *err = io->bufs ? -errno : -ENOMEM;
        vtep_io_close(io);
        return NULL;
    }
    /* No packet-information header; a virtio-net header before each frame. */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multiqueue ? IFF_MULTI_QUEUE : 0);
    memcpy(ifr.ifr_name, ifname, strlen(ifname));
    io->vnet = 1;
    if (ioctl(io->fd, TUNSETIFF, &ifr) < 0
        || ioctl(io->fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0) {
        *err = -errno;
        vtep_io_close(io);
        return NULL;
    }
    *err = 0;
    return io;
}

uint32_t vtep_tap_rx(vtep_io_t *io, vtep_pkt_t *pkts, uint32_t max, uint32_t *oversize)
{
    uint32_t n = 0;
    if (max > io->frames)
        max = io->frames;
    while (n < max) {
        uint8_t *buf = io->bufs + (size_t)n * io->frame_size;
        /* One byte of room more than a frame may have tells a cut one apart. */
        ssize_t got = read(io->fd, buf, io->frame_size);
        if (got < 0)
            break;  /* EAGAIN: nothing more for now (or the TAP is going away) */
        if ((uint32_t)got >= io->frame_size || got < VTEP_VNET_HDR_LEN) {
            ++*oversize;
            continue;
        }
        vtep_pkt_t *p = &pkts[n];
        *p = (vtep_pkt_t){.data = buf + VTEP_VNET_HDR_LEN, .len = (uint32_t)got - VTEP_VNET_HDR_LEN};
        if (vtep_unlikely(!vtep_vnet_take(p, buf))) {
            ++*oversize;
            continue;
        }
        n++;
    }
    return n;
}

int vtep_tap_tx(vtep_io_t *io, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len)
{
    static const uint8_t done[VTEP_VNET_HDR_LEN];  /* nothing left to offload */
    struct iovec iov[3] = {{(void *)done, sizeof done}, {(void *)hdr, hdr_len}, {(void *)data, len}};
    return vtep_tap_tx_super(io, iov, 3);
}

int vtep_tap_tx_super(vtep_io_t *io, const struct iovec *iov, int n)
{
    if (writev(io->fd, iov, n) >= 0)
        return 0;
    return errno == EAGAIN ? -ENOBUFS : errno == EINVAL ? -EMSGSIZE : -errno;
}
