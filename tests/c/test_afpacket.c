/* The AF_PACKET TX ring (csrc/io_afpacket.c) on the loopback of a network
 * namespace of its own (root): with virtio-net headers, a frame of up to
 * TX_HEAD_MAX bytes asks the kernel to copy it whole into the skb's head
 * (hdr_len = its length), a longer one leaves hdr_len 0 (page fragments of
 * the ring), and every frame arrives as it was queued.  And the underlay's
 * receive: UDP super-packets (sent with UDP_SEGMENT) come out as the
 * datagrams they stand for, intact, when a big one (through the socket's
 * queue) and a small one (in a ring slot) arrive in the same burst.
 *
 * Checks as in check.h; main() exits 1 if any failed.  Run by `make test-c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "check.h"
#include "io.h"
#include "offload.h"

enum { HEAD_MAX = 1600 };  /* io_afpacket.c's TX_HEAD_MAX */

static int die(const char *what)
{
    fprintf(stderr, "test_afpacket: %s: %s\n", what, strerror(errno));
    return 1;
}

/* The virtio-net header of the TX slot that frame "i" of a fresh handle went to. */
static struct vtep_vnet_hdr slot_vnet(const vtep_io_t *io, uint32_t i)
{
    struct vtep_vnet_hdr vh;
    memcpy(&vh, io->tx_ring + (size_t)i * io->frame_size + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)), sizeof vh);
    return vh;
}

/* A frame of "len" bytes, to a MAC nobody has, with a payload that says
 * which frame it is. */
static void make_frame(uint8_t *f, uint32_t len, uint8_t tag)
{
    static const uint8_t head[14] = {0x02, 0, 0, 0, 0, 0xaa, 0x02, 0, 0, 0, 0, 0xbb, 0x88, 0xb5};
    memcpy(f, head, sizeof head);
    for (uint32_t i = sizeof head; i < len; i++)
        f[i] = (uint8_t)(tag + i);
}

/* Send "len" bytes to 127.0.0.1:4789 as one super-packet of "gso"-byte
 * datagrams; byte j > 0 of datagram k is k + j, byte 0 is "tag". */
static int send_super(uint32_t len, uint16_t gso, uint8_t tag)
{
    static uint8_t payload[65536];
    for (uint32_t i = 0; i < len; i++)
        payload[i] = i % gso == 0 ? tag : (uint8_t)(i / gso + i % gso);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(4789), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && setsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &(int){gso}, sizeof(int)) == 0
          && sendto(fd, payload, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len;
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

/* Datagram "p" is datagram "k" of send "tag", of "want" payload bytes, as sent. */
static void check_datagram(const vtep_pkt_t *p, uint8_t tag, uint32_t k, uint32_t want)
{
    const uint8_t *udp = p->data + 14 + 20, *data = udp + 8;
    CHECK_EQ(p->len, 14 + 20 + 8 + want);
    CHECK_EQ(udp[4] << 8 | udp[5], 8 + want);
    CHECK_EQ(data[0], tag);
    uint32_t wrong = 0;
    for (uint32_t i = 1; i < want; i++)
        wrong += data[i] != (uint8_t)(k + i);
    CHECK_EQ(wrong, 0);
}

/* The underlay's receive of super-packets on lo. */
static int underlay_receive(void)
{
    int err;
    vtep_afpacket_params_t p = {.ifname = "lo", .offload = 1, .tunnel_only = 1, .destination_port = 4789,
                                .local = {.family = 4, .bytes = {127, 0, 0, 1}}};
    vtep_io_t *io = vtep_io_afpacket_open(&p, &err);
    if (!io) {
        errno = -err;
        return die("vtep_io_afpacket_open(lo, underlay)");
    }
    /* 8 datagrams of 1000 bytes: too big for a slot, so through the
     * socket's queue; then 2 datagrams (600 and 300 bytes) in a slot. */
    static const struct { uint8_t tag; uint16_t gso; uint32_t len; } sent[] = {{0xa1, 1000, 8000}, {0xb2, 600, 900}};
    for (int i = 0; i < 2; i++)
        if (send_super(sent[i].len, sent[i].gso, sent[i].tag))
            return die("sending a super-packet");
    usleep(100 * 1000);
    /* One burst could take both: the second cut must not overwrite the
     * first's datagrams while they are lent. */
    vtep_pkt_t pkts[64];
    uint32_t done = 0, k = 0, oversize = 0;
    for (int burst = 0; burst < 4 && done < 2; burst++) {
        uint32_t n = vtep_afpacket_rx(io, pkts, 64, &oversize);
        for (uint32_t i = 0; i < n && done < 2; i++) {
            uint32_t whole = sent[done].len / sent[done].gso, rest = sent[done].len % sent[done].gso;
            check_datagram(&pkts[i], sent[done].tag, k, k < whole ? sent[done].gso : rest);
            if (++k == whole + (rest != 0)) {
                k = 0;
                done++;
            }
        }
        vtep_afpacket_rx_done(io);
    }
    CHECK_EQ(done, 2);
    CHECK_EQ(oversize, 0);
    vtep_io_close(io);
    return 0;
}

int main(void)
{
    if (unshare(CLONE_NEWNET) < 0)
        return die("unshare(CLONE_NEWNET) (needs root)");
    int ctl = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = {.ifr_name = "lo", .ifr_flags = IFF_UP};
    if (ctl < 0 || ioctl(ctl, SIOCSIFFLAGS, &ifr) < 0)
        return die("lo up");

    /* What crosses lo, seen by an ordinary packet socket. */
    int rx = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    struct sockaddr_ll at = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                             .sll_ifindex = (int)if_nametoindex("lo")};
    if (rx < 0 || bind(rx, (struct sockaddr *)&at, sizeof at) < 0)
        return die("receiving socket");

    int err;
    vtep_afpacket_params_t p = {.ifname = "lo", .offload = 1};
    vtep_io_t *io = vtep_io_afpacket_open(&p, &err);
    if (!io) {
        errno = -err;
        return die("vtep_io_afpacket_open(lo)");
    }
    const uint32_t lens[] = {60, 114, HEAD_MAX, HEAD_MAX + 1, 1900};
    enum { N = sizeof lens / sizeof lens[0] };
    static uint8_t frames[N][2048];
    for (uint32_t i = 0; i < N; i++) {
        make_frame(frames[i], lens[i], (uint8_t)i);
        CHECK_EQ(vtep_io_tx(io, NULL, 0, frames[i], lens[i]), 0);
        struct vtep_vnet_hdr vh = slot_vnet(io, i);
        CHECK_EQ(le16toh(vh.hdr_len), lens[i] <= HEAD_MAX ? lens[i] : 0);
        CHECK_EQ(vh.flags | vh.gso_type | vh.gso_size | vh.csum_start | vh.csum_offset, 0);
    }
    vtep_io_flush(io);

    uint32_t seen = 0;
    uint8_t buf[4096];
    struct pollfd pfd = {.fd = rx, .events = POLLIN};
    while (seen < N && poll(&pfd, 1, 2000) > 0) {
        struct sockaddr_ll from;
        socklen_t from_len = sizeof from;
        ssize_t got = recvfrom(rx, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        if (got < 0)
            return die("recvfrom");
        if (from.sll_pkttype == PACKET_OUTGOING)
            continue;
        CHECK_EQ(got, lens[seen]);
        CHECK_EQ(memcmp(buf, frames[seen], lens[seen]), 0);
        seen++;
    }
    CHECK_EQ(seen, N);
    vtep_io_close(io);
    close(rx);
    if (underlay_receive())
        return 1;

    return check_summary("test_afpacket");
}
