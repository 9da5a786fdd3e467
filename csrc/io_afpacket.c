/* AF_PACKET I/O: TPACKET_V2 RX and TX rings in one mapping.
 *
 * The socket is opened with protocol 0 (it receives nothing), configured,
 * given its filter (the underlay's: tunnel_bpf.h) and only then bound to
 * the link with ETH_P_ALL, so no frame reaches it half-configured.  Transmissions bypass the qdisc (we
 * batch ourselves) and are not echoed back to us (PACKET_IGNORE_OUTGOING).
 * Everything set here dies with the socket: promiscuous mode, the fanout
 * group, the filter.  A killed vtepd leaves nothing behind. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "io.h"
#include "offload.h"
#include "tunnel_bpf.h"

/* Where a TX frame's data starts in its slot (after the aligned header). */
#define TX_DATA_OFFSET TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
/* Slots hold MTU-sized frames; a longer one (a 64 KB GSO super-frame with
 * offloads, a jumbo frame) comes through the socket's receive queue
 * instead (PACKET_COPY_THRESH), read into a buffer of COPY_MAX bytes, with
 * a receive buffer of COPY_RCVBUF for those waiting their turn.  So the
 * ring can be deep in frames (RX_FRAMES: milliseconds of line rate, which
 * rides out this machine's scheduling stalls) and small in bytes (8 MB of
 * 2 KB slots). */
enum { RX_FRAMES = 4096, TX_FRAMES = 1024, COPY_MAX = 65536 + 4096, COPY_RCVBUF = 16 << 20 };
/* The send-only socket's budget of super-frames in flight: until the
 * receiving stack frees one, it counts against its sender, and the
 * default (about 200 KB) is three super-frames. */
enum { SUPER_SNDBUF = 8 << 20 };
/* With a virtio-net header, the kernel copies a TX frame's first hdr_len
 * bytes into the skb's head and hands the rest over as fragments of the
 * ring's pages; a veth must copy those fragments into fresh pages before
 * its peer may keep them (skb_copy_ubufs).  A frame of up to TX_HEAD_MAX
 * bytes goes whole into the head instead, which then fits a 2 KiB slab
 * object: less CPU per frame through a veth (perf/README.md, "TX frames
 * in the skb's head"); longer (jumbo) frames stay fragments. */
enum { TX_HEAD_MAX = 1600 };
/* A super-packet cut on the underlay: at most as many datagrams as the
 * kernel's UDP GSO makes (UDP_MAX_SEGMENTS), each with its own copy of the
 * outer headers (at most Ethernet, IPv4 with options and UDP). */
enum { SPLIT_MAX = 128, SPLIT_ROOM = COPY_MAX + SPLIT_MAX * (14 + 60 + 8) };

static int setopt(int fd, int level, int name, const void *v, socklen_t len)
{
    return setsockopt(fd, level, name, v, len) < 0 ? -errno : 0;
}

static int setopt_int(int fd, int level, int name, int v)
{
    return setopt(fd, level, name, &v, sizeof v);
}

static uint32_t round_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

/* A ring of about "frames" slots of at least "frame_size" bytes.  Frames
 * never span blocks: slots up to a page are a power of two and share
 * page-sized blocks; a larger slot is a whole number of pages and a block
 * of its own.  Either way slot i starts at i * frame_size.  The counts are
 * set to what the ring really has (a power of two). */
static int ring_req(struct tpacket_req *req, uint32_t *frame_size, uint32_t *frames)
{
    uint32_t size = *frame_size > 4096 ? (*frame_size + 4095) & ~4095u : round_pow2(*frame_size);
    uint32_t block = size > 4096 ? size : 4096;
    uint32_t n = round_pow2(*frames);
    *req = (struct tpacket_req){.tp_block_size = block, .tp_block_nr = (uint32_t)((uint64_t)n * size / block),
                                .tp_frame_size = size};
    if (req->tp_block_nr == 0)
        return -EINVAL;
    req->tp_frame_nr = req->tp_block_nr * (block / size);
    *frame_size = size;
    *frames = req->tp_frame_nr;
    return 0;
}

static int read_max_frame(vtep_io_t *io)
{
    struct ifreq ifr = {.ifr_ifindex = io->ifindex};
    if (!if_indextoname((unsigned)io->ifindex, ifr.ifr_name) || ioctl(io->fd, SIOCGIFMTU, &ifr) < 0)
        return -errno;
    io->max_frame = (uint32_t)ifr.ifr_mtu + ETHER_HDR_LEN;
    return 0;
}

void vtep_io_read_mtu(vtep_io_t *io)
{
    if (io->kind == VTEP_IO_AFPACKET)
        (void)read_max_frame(io);  /* the link is gone: TX fails anyway */
}

static int afpacket_setup(vtep_io_t *io, const vtep_afpacket_params_t *p)
{
    int rc, ifindex = (int)if_nametoindex(p->ifname);
    if (!ifindex)
        return -ENODEV;
    io->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (io->fd < 0)
        return -errno;
    if ((rc = setopt_int(io->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2))
        || (rc = setopt_int(io->fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1))
        || (rc = setopt_int(io->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1))
        || (p->offload && (rc = setopt_int(io->fd, SOL_PACKET, PACKET_VNET_HDR, 1))))
        return rc;
    io->vnet = p->offload;
    io->tunnel = p->tunnel_only;
    if (p->offload && p->tunnel_only
        && (!(io->split = malloc(SPLIT_ROOM)) || !(io->split_pkts = calloc(SPLIT_MAX, sizeof *io->split_pkts))))
        return -ENOMEM;
    if (p->offload) {
        /* Protocol 0: it receives nothing. */
        io->super_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = ifindex};
        if (io->super_fd < 0 || bind(io->super_fd, (struct sockaddr *)&to, sizeof to) < 0)
            return -errno;
        if ((rc = setopt_int(io->super_fd, SOL_PACKET, PACKET_VNET_HDR, 1))
            || (rc = setopt_int(io->super_fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1))
            || (setopt_int(io->super_fd, SOL_SOCKET, SO_SNDBUFFORCE, SUPER_SNDBUF)
                && (rc = setopt_int(io->super_fd, SOL_SOCKET, SO_SNDBUF, SUPER_SNDBUF))))
            return rc;
    }
    /* A frame too long for the link stops the kernel's walk of the TX ring
     * at its slot (TP_STATUS_WRONG_FORMAT) until we come round to that slot
     * again: lengths are checked here (and counted), and PACKET_LOSS makes
     * the kernel skip any that still get through (an MTU not yet re-read). */
    io->ifindex = ifindex;
    if ((rc = read_max_frame(io)) || (rc = setopt_int(io->fd, SOL_PACKET, PACKET_LOSS, 1)))
        return rc;

    io->frame_size = p->frame_size ? p->frame_size : 2048;
    io->frames = p->frames ? p->frames : TX_FRAMES;
    io->rx_frames = p->frames ? p->frames : RX_FRAMES;
    if (!(io->bufs = malloc(COPY_MAX)))
        return -ENOMEM;
    if ((rc = setopt_int(io->fd, SOL_PACKET, PACKET_COPY_THRESH, 1))
        || (setopt_int(io->fd, SOL_SOCKET, SO_RCVBUFFORCE, COPY_RCVBUF)
            && (rc = setopt_int(io->fd, SOL_SOCKET, SO_RCVBUF, COPY_RCVBUF))))
        return rc;
    uint32_t rx_frame_size = io->frame_size;
    struct tpacket_req rx, tx;
    if ((rc = ring_req(&rx, &rx_frame_size, &io->rx_frames))
        || (rc = ring_req(&tx, &io->frame_size, &io->frames))
        || (rc = setopt(io->fd, SOL_PACKET, PACKET_RX_RING, &rx, sizeof rx))
        || (rc = setopt(io->fd, SOL_PACKET, PACKET_TX_RING, &tx, sizeof tx)))
        return rc;
    size_t rx_len = (size_t)rx.tp_block_nr * rx.tp_block_size;
    io->map_len = rx_len + (size_t)tx.tp_block_nr * tx.tp_block_size;
    io->map = mmap(NULL, io->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, io->fd, 0);
    if (io->map == MAP_FAILED) {
        io->map = NULL;
        return -errno;
    }
    io->rx_ring = io->map;
    io->tx_ring = io->map + rx_len;

    if (p->tunnel_only && (rc = vtep_tunnel_filter(io->fd, &p->local, p->destination_port)))
        return rc;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = ifindex};
    if (bind(io->fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        return -errno;
    if (p->promiscuous) {
        struct packet_mreq mr = {.mr_ifindex = ifindex, .mr_type = PACKET_MR_PROMISC};
        if ((rc = setopt(io->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr)))
            return rc;
    }
    if (p->fanout_group
        && (rc = setopt_int(io->fd, SOL_PACKET, PACKET_FANOUT, p->fanout_group | PACKET_FANOUT_HASH << 16)))
        return rc;
    return 0;
}

vtep_io_t *vtep_io_afpacket_open(const vtep_afpacket_params_t *p, int *err)
{
    vtep_io_t *io = calloc(1, sizeof *io);
    if (!io) {
        *err = -ENOMEM;
        return NULL;
    }
    io->kind = VTEP_IO_AFPACKET;
    io->fd = io->super_fd = -1;
    *err = afpacket_setup(io, p);
    if (*err) {
        vtep_io_close(io);
        return NULL;
    }
    return io;
}

void vtep_io_close(vtep_io_t *io)
{
    if (!io)
        return;
    if (io->map)
        munmap(io->map, io->map_len);
    if (io->fd >= 0)
        close(io->fd);
    if (io->super_fd >= 0)
        close(io->super_fd);
    free(io->bufs);
    free(io->split);
    free(io->split_pkts);
    free(io);
}

VTEP_INLINE struct tpacket2_hdr *rx_slot(const vtep_io_t *io, uint32_t i)
{
    return (struct tpacket2_hdr *)(io->rx_ring + (size_t)(i & (io->rx_frames - 1)) * io->frame_size);
}

VTEP_INLINE struct tpacket2_hdr *tx_slot(const vtep_io_t *io, uint32_t i)
{
    return (struct tpacket2_hdr *)(io->tx_ring + (size_t)(i & (io->frames - 1)) * io->frame_size);
}

/* The whole of a frame too big for its slot, from the receive queue (in
 * the ring's order): its length, with "*data" at its Ethernet header (after
 * the virtio-net header, where vnet_take looks for it); 0 if it did not fit. */
static uint32_t take_copy(vtep_io_t *io, uint8_t **data)
{
    ssize_t got = recv(io->fd, io->bufs, COPY_MAX, MSG_DONTWAIT | MSG_TRUNC);
    uint32_t vnet = io->vnet ? VTEP_VNET_HDR_LEN : 0;
    if (got <= (ssize_t)vnet || got > COPY_MAX)
        return 0;
    *data = io->bufs + vnet;
    return (uint32_t)got - vnet;
}

/* Lend what is left of the last super-packet cut, up to "max". */
static uint32_t lend_split(vtep_io_t *io, vtep_pkt_t *pkts, uint32_t max)
{
    uint32_t n = io->split_left < max ? io->split_left : max;
    memcpy(pkts, io->split_pkts + io->split_next, n * sizeof *pkts);
    io->split_next += n;
    io->split_left -= n;
    return n;
}

/* An underlay frame with virtio-net header "vnet": 1 if it is a plain
 * frame, else cut it if it is a UDP super-packet (its datagrams are then
 * lent from io->split) and return 0. */
static int underlay_take(vtep_io_t *io, const vtep_pkt_t *p, const void *vnet, uint32_t *oversize)
{
    struct vtep_vnet_hdr vh;
    memcpy(&vh, vnet, sizeof vh);
    if (vtep_likely(vh.gso_type == VTEP_GSO_NONE))
        return 1;
    uint32_t n = vh.gso_type == VTEP_GSO_UDP_L4
                     ? vtep_udp_split(p->data, p->len, vh.gso_size, io->split, SPLIT_ROOM, io->split_pkts, SPLIT_MAX)
                     : 0;
    if (!n)
        ++*oversize;  /* no super-packet vtep can cut: too big to take as it is */
    io->split_next = 0;
    io->split_left = n;
    return 0;
}

/* Whether the underlay frame with virtio-net header "vnet" is a super-packet
 * (cut into io->split). */
static int is_super(const void *vnet)
{
    struct vtep_vnet_hdr vh;
    memcpy(&vh, vnet, sizeof vh);
    return vh.gso_type != VTEP_GSO_NONE;
}

uint32_t vtep_afpacket_rx(vtep_io_t *io, vtep_pkt_t *pkts, uint32_t max, uint32_t *oversize)
{
    /* io->bufs (a copy) and io->split (a cut) hold what they lend until the
     * next burst: once either is in use, the next frame that needs one of
     * them waits for that burst, or its cut would overwrite frames already
     * lent (seen as bad_header drops under load). */
    uint32_t n = 0, lent = 0, buffered = 0;
    if (vtep_unlikely(io->split_left)) {
        n = lend_split(io, pkts, max);
        buffered = 1;
    }
    while (n < max && lent < io->rx_frames) {
        struct tpacket2_hdr *h = rx_slot(io, io->rx_head + lent);
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER))
            break;
        uint8_t *data = (uint8_t *)h + h->tp_mac;
        uint32_t len = h->tp_snaplen;
        if (vtep_unlikely(status & TP_STATUS_COPY || (io->split && is_super(data - VTEP_VNET_HDR_LEN)))) {
            if (buffered)
                break;
            buffered = 1;
        }
        if (vtep_unlikely(status & TP_STATUS_COPY)) {
            len = take_copy(io, &data);
        } else if (vtep_unlikely(len < h->tp_len)) {
            len = 0;  /* no room for a copy on the socket either */
        }
        lent++;
        if (vtep_unlikely(!len)) {
            ++*oversize;
            continue;
        }
        vtep_pkt_t *p = &pkts[n];
        *p = (vtep_pkt_t){.data = data, .len = len};
        if (io->vnet) {
            if (io->tunnel) {
                if (vtep_unlikely(!underlay_take(io, p, data - VTEP_VNET_HDR_LEN, oversize))) {
                    n += lend_split(io, p, max - n);
                    continue;
                }
            } else if (vtep_unlikely(!vtep_vnet_take(p, data - VTEP_VNET_HDR_LEN))) {
                ++*oversize;  /* a kind of super-frame vtep cannot cut: too big to send as it is */
                continue;
            }
        }
        /* An unfinished checksum on the underlay may be the inner frame's
         * (the kernel's VXLAN on this host leaves it so): finished when the
         * inner frame is sent (loop.c).  On a port, vnet_take finished it. */
        p->flags = (status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID) ? VTEP_PKT_CSUM_OK : 0)
                 | (status & TP_STATUS_CSUMNOTREADY && (!io->vnet || io->tunnel) ? VTEP_PKT_CSUM_PARTIAL : 0)
                 | (status & TP_STATUS_VLAN_VALID ? VTEP_PKT_VLAN : 0);
        n++;
    }
    io->rx_lent = lent;
    return n;
}

void vtep_afpacket_rx_done(vtep_io_t *io)
{
    for (uint32_t i = 0; i < io->rx_lent; i++)
        __atomic_store_n(&rx_slot(io, io->rx_head + i)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    io->rx_head = (io->rx_head + io->rx_lent) & (io->rx_frames - 1);
    io->rx_lent = 0;
}

VTEP_INLINE int tx_slot_free(struct tpacket2_hdr *h)
{
    uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    return status == TP_STATUS_AVAILABLE || status == TP_STATUS_WRONG_FORMAT;
}

int vtep_afpacket_tx(vtep_io_t *io, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len)
{
    uint32_t vnet = io->vnet ? VTEP_VNET_HDR_LEN : 0;
    if (vtep_unlikely(vnet + hdr_len + len > io->frame_size - TX_DATA_OFFSET || hdr_len + len > io->max_frame))
        return -EMSGSIZE;
    struct tpacket2_hdr *h = tx_slot(io, io->tx_head);
    if (vtep_unlikely(!tx_slot_free(h)) && io->tx_queued) {
        /* The ring is full of our own frames (a super-frame's segments,
         * say): hand them to the kernel now, not at the end of the burst. */
        vtep_afpacket_flush(io);
    }
    if (!tx_slot_free(h))
        return -ENOBUFS;  /* the kernel has not sent this slot's last frame yet */
    uint8_t *out = (uint8_t *)h + TX_DATA_OFFSET;
    if (vnet) {
        /* Nothing left to offload: vtep sends finished frames. */
        struct vtep_vnet_hdr vh = {.hdr_len = hdr_len + len <= TX_HEAD_MAX ? htole16((uint16_t)(hdr_len + len)) : 0};
        memcpy(out, &vh, VTEP_VNET_HDR_LEN);
    }
    if (hdr_len)  /* hdr may be NULL then, and memcpy must not see it */
        memcpy(out + vnet, hdr, hdr_len);
    memcpy(out + vnet + hdr_len, data, len);
    h->tp_len = vnet + hdr_len + len;
    __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    io->tx_head = (io->tx_head + 1) & (io->frames - 1);
    io->tx_queued++;
    return 0;
}

static int tx_errno(int e)
{
    return e == EAGAIN || e == ENOBUFS ? -ENOBUFS : e == EMSGSIZE || e == EINVAL ? -EMSGSIZE : -e;
}

int vtep_afpacket_tx_super(vtep_io_t *io, const struct iovec *iov, int n)
{
    if (io->super_fd < 0)
        return -EMSGSIZE;
    vtep_afpacket_flush(io);  /* what the ring holds went first */
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    return sendmsg(io->super_fd, &msg, MSG_DONTWAIT) >= 0 ? 0 : tx_errno(errno);
}

void vtep_afpacket_flush(vtep_io_t *io)
{
    if (!io->tx_queued)
        return;
    /* Without waiting: slots the kernel cannot take now stay queued and go
     * with the next flush. */
    if (sendto(io->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0 || errno == EAGAIN || errno == ENOBUFS)
        io->tx_queued = 0;
}

uint32_t vtep_io_kernel_drops(vtep_io_t *io)
{
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    if (io->kind != VTEP_IO_AFPACKET || getsockopt(io->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0)
        return 0;
    return st.tp_drops;  /* reading resets them */
}
