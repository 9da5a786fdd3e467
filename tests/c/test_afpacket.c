/* The AF_PACKET TX ring (csrc/io_afpacket.c) on the loopback of a network
 * namespace of its own (root): with virtio-net headers, a frame of up to
 * TX_HEAD_MAX bytes asks the kernel to copy it whole into the skb's head
 * (hdr_len = its length), a longer one leaves hdr_len 0 (page fragments of
 * the ring), and every frame arrives as it was queued.
 *
 * No framework: main() prints each failed check and exits 1 if any failed.
 * Run by `make test-c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "io.h"
#include "offload.h"

enum { HEAD_MAX = 1600 };  /* io_afpacket.c's TX_HEAD_MAX */

static int failures, checks;

#define CHECK_EQ(got, want)                                                                  \
    do {                                                                                     \
        long long got_ = (long long)(got), want_ = (long long)(want);                        \
        checks++;                                                                            \
        if (got_ != want_) {                                                                 \
            failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #got, \
                    got_, #want, want_);                                                     \
        }                                                                                    \
    } while (0)

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

    if (failures) {
        fprintf(stderr, "test_afpacket: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_afpacket: all %d checks passed\n", checks);
    return 0;
}
