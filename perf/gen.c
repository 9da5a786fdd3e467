/* vtep-gen: replays the frames of a pcap file on a link, cycling through
 * them, at a given rate, from an AF_PACKET TX ring.
 *
 * Its own ring, not vtep's I/O: a generator wants many slots (RING_SLOTS)
 * sized to its largest frame, and no RX ring.  The socket bypasses the qdisc
 * and is bound with protocol 0, so it receives nothing.
 *
 * Pacing keeps an absolute schedule: frame k is due "k / rate" seconds after
 * the start (CLOCK_MONOTONIC).  Each pass queues what is due, at most one
 * batch and what fits in free slots, and hands it to the kernel with one
 * sendto(MSG_DONTWAIT).  A sender that fell behind by more than a batch
 * forgives the rest instead of bursting to catch up, so the achieved rate
 * it reports is what it could do.  It spins while the next frame is less
 * than SLEEP_AHEAD_NS away and sleeps otherwise.
 *
 * "sent" counts frames the kernel accepted: slots it gave back as
 * AVAILABLE.  A slot given back as WRONG_FORMAT is an error, and stops the
 * run: the kernel's ring head stays on that slot, so nothing after it would
 * go.  Frames are checked against the link's MTU first so that it does not
 * happen.
 *
 * --stamp writes a trailer over the last 16 bytes of every frame just before
 * it is queued: STAMP_MAGIC then CLOCK_MONOTONIC in ns, both big-endian.
 * vtep-sink (perf/sink.c) reads it back.
 *
 * Exit status: 0; 1 if the kernel refused a frame or sendto() failed (link
 * down); 2 for bad arguments, a missing link, an unreadable pcap or frames
 * the link cannot take. */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    RING_SLOTS = 4096,
    MAX_BATCH = RING_SLOTS / 2,
    STAMP_LEN = 16,
    LINKTYPE_ETHERNET = 1,
};
#define SLEEP_AHEAD_NS 200000ull
#define DRAIN_NS 1000000000ull    /* at the end, how long to wait for frames in flight */
#define STAMP_MAGIC 0x7674657073746d70ull  /* "vtepstmp" */
/* Where a TX frame's data starts in its slot (no PACKET_TX_HAS_OFF). */
#define TX_DATA_OFFSET TPACKET_ALIGN(sizeof(struct tpacket2_hdr))

typedef struct gen_frames {
    uint8_t *file;            /* the whole pcap file; frames point into it */
    const uint8_t **data;
    uint32_t *len;
    uint32_t n;
    uint32_t max_len;
} gen_frames_t;

typedef struct gen_ring {
    int fd;
    uint8_t *map;
    uint32_t slot_size;
    uint32_t head;            /* next slot to fill */
    uint32_t tail;            /* oldest slot handed to the kernel */
    uint32_t inflight;        /* slots from tail to head */
} gen_ring_t;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vtep-gen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* A pcap header field at "p" (any alignment), in the file's byte order
 * ("swap": the other one), returned in host order. */
static uint32_t pcap_u32(const uint8_t *p, int swap)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return swap ? __builtin_bswap32(v) : v;
}

/* Classic pcap only ("magic" in either byte order, µs or ns timestamps),
 * Ethernet, every record complete: a truncated frame would be replayed
 * short. */
static void pcap_load(const char *path, gen_frames_t *f)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, size = 0, got;
    f->file = malloc(cap);
    while (f->file && (got = fread(f->file + size, 1, cap - size, fp)) > 0)
        if ((size += got) == cap)
            f->file = realloc(f->file, cap *= 2);
    if (!f->file)
        die("%s: out of memory", path);
    if (ferror(fp))
        die("%s: %s", path, strerror(errno));
    fclose(fp);

    uint32_t magic;
    if (size < 24)
        die("%s: not a pcap file (too short)", path);
    memcpy(&magic, f->file, 4);
    int swap = magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1;
    if (!swap && magic != 0xa1b2c3d4 && magic != 0xa1b23c4d)
        die("%s: not a classic pcap file%s", path,
            magic == 0x0a0d0d0a ? " (pcapng: convert it with editcap -F pcap)" : "");
    uint32_t linktype = pcap_u32(f->file + 20, swap);
    if (linktype != LINKTYPE_ETHERNET)
        die("%s: link type %u, want Ethernet (1)", path, linktype);

    size_t alloc = 0;
    f->n = 0;
    for (size_t off = 24; off < size;) {
        if (size - off < 16)
            die("%s: truncated record header at offset %zu", path, off);
        uint32_t caplen = pcap_u32(f->file + off + 8, swap), len = pcap_u32(f->file + off + 12, swap);
        off += 16;
        if (caplen > size - off)
            die("%s: record %u runs past the end of the file", path, f->n + 1);
        if (caplen != len)
            die("%s: record %u holds %u of its %u bytes", path, f->n + 1, caplen, len);
        if (f->n == alloc) {
            alloc = alloc ? 2 * alloc : 1024;
            f->data = realloc(f->data, alloc * sizeof *f->data);
            f->len = realloc(f->len, alloc * sizeof *f->len);
            if (!f->data || !f->len)
                die("%s: out of memory", path);
        }
        f->data[f->n] = f->file + off;
        f->len[f->n++] = caplen;
        if (caplen > f->max_len)
            f->max_len = caplen;
        off += caplen;
    }
    if (!f->n)
        die("%s: no frames", path);
}

static uint32_t round_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static void ring_open(gen_ring_t *r, const char *ifname, uint32_t max_len)
{
    unsigned ifindex = if_nametoindex(ifname);
    if (!ifindex)
        die("%s: no such interface", ifname);
    r->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (r->fd < 0)
        die("socket(AF_PACKET): %s", strerror(errno));
    int v2 = TPACKET_V2, one = 1;
    if (setsockopt(r->fd, SOL_PACKET, PACKET_VERSION, &v2, sizeof v2) < 0
        || setsockopt(r->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0)
        die("%s: setsockopt: %s", ifname, strerror(errno));

    /* Slots as small as the largest frame allows: fewer pages and cache
     * lines for the kernel and us to touch.  Frames never span blocks. */
    r->slot_size = round_pow2(TX_DATA_OFFSET + max_len);
    if (r->slot_size < 128)
        r->slot_size = 128;
    uint32_t block = r->slot_size > 4096 ? r->slot_size : 4096;
    struct tpacket_req req = {
        .tp_block_size = block,
        .tp_block_nr = RING_SLOTS * r->slot_size / block,
        .tp_frame_size = r->slot_size,
        .tp_frame_nr = RING_SLOTS,
    };
    if (setsockopt(r->fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0)
        die("%s: PACKET_TX_RING: %s", ifname, strerror(errno));
    r->map = mmap(NULL, (size_t)req.tp_block_nr * block, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, 0);
    if (r->map == MAP_FAILED)
        die("%s: mmap: %s", ifname, strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = (int)ifindex};
    if (bind(r->fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        die("%s: bind: %s", ifname, strerror(errno));
}

/* The largest frame "ifname" takes from a packet socket: the kernel refuses
 * more than MTU + Ethernet header. */
static uint32_t max_frame(int fd, const char *ifname)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(fd, SIOCGIFMTU, &ifr) < 0)
        die("%s: SIOCGIFMTU: %s", ifname, strerror(errno));
    return (uint32_t)ifr.ifr_mtu + ETH_HLEN;
}

static struct tpacket2_hdr *slot(const gen_ring_t *r, uint32_t i)
{
    return (struct tpacket2_hdr *)(r->map + (size_t)i * r->slot_size);
}

/* Takes back, in order, the slots the kernel is done with. */
static void reclaim(gen_ring_t *r, uint64_t *sent, uint64_t *errors)
{
    while (r->inflight) {
        uint32_t status = __atomic_load_n(&slot(r, r->tail)->tp_status, __ATOMIC_ACQUIRE);
        if (status == TP_STATUS_AVAILABLE)
            ++*sent;
        else if (status == TP_STATUS_WRONG_FORMAT)
            ++*errors;
        else
            break;
        r->tail = (r->tail + 1) % RING_SLOTS;
        r->inflight--;
    }
}

/* The kernel has not taken the oldest frame we queued: an earlier sendto()
 * stopped short (EAGAIN, ENOBUFS). */
static int left_behind(const gen_ring_t *r)
{
    return r->inflight && __atomic_load_n(&slot(r, r->tail)->tp_status, __ATOMIC_ACQUIRE) == TP_STATUS_SEND_REQUEST;
}

/* Hands the kernel what is queued.  Returns 0, or -errno for an error that
 * will not go away by trying again. */
static int kick(gen_ring_t *r)
{
    if (sendto(r->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0 || errno == EAGAIN || errno == ENOBUFS)
        return 0;
    return -errno;
}

static void queue_frame(gen_ring_t *r, const uint8_t *data, uint32_t len, int stamp)
{
    struct tpacket2_hdr *h = slot(r, r->head);
    uint8_t *out = (uint8_t *)h + TX_DATA_OFFSET;
    memcpy(out, data, len);
    if (stamp) {
        uint64_t trailer[2] = {htobe64(STAMP_MAGIC), htobe64(now_ns())};
        memcpy(out + len - STAMP_LEN, trailer, STAMP_LEN);
    }
    h->tp_len = len;
    __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    r->head = (r->head + 1) % RING_SLOTS;
    r->inflight++;
}

static double parse_num(const char *opt, const char *s, double min, double max, int integer)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max) || (integer && v != (double)(uint64_t)v))
        die("--%s %s: want %s from %g to %g", opt, s, integer ? "an integer" : "a number", min, max);
    return v;
}

static void usage(void)
{
    fputs("usage: vtep-gen --dev IFACE --pcap FILE --rate PPS --duration SECONDS [--count N] [--stamp] [--batch 64]\n"
          "Replays the pcap's frames on IFACE, cycling, at PPS frames a second (0: as fast as it can),\n"
          "until SECONDS have passed or N frames were queued; then prints\n"
          "{\"sent\": n, \"errors\": n, \"seconds\": s, \"rate\": pps, \"offered_rate\": pps}.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dev", 1, 0, 'd'}, {"pcap", 1, 0, 'p'}, {"rate", 1, 0, 'r'}, {"duration", 1, 0, 't'},
        {"count", 1, 0, 'n'}, {"stamp", 0, 0, 's'}, {"batch", 1, 0, 'b'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *dev = NULL, *pcap = NULL;
    double rate = -1, duration = -1;
    uint64_t count = 0;
    uint32_t batch = 64;
    int stamp = 0, c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dev = optarg; break;
        case 'p': pcap = optarg; break;
        case 'r': rate = parse_num("rate", optarg, 0, 1e9, 0); break;
        case 't': duration = parse_num("duration", optarg, 0.001, 1e6, 0); break;
        case 'n': count = (uint64_t)parse_num("count", optarg, 1, 1e15, 1); break;
        case 's': stamp = 1; break;
        case 'b': batch = (uint32_t)parse_num("batch", optarg, 1, MAX_BATCH, 1); break;
        default: usage();
        }
    }
    if (optind != argc || !dev || !pcap || rate < 0 || duration < 0)
        usage();

    gen_frames_t f = {0};
    pcap_load(pcap, &f);
    gen_ring_t r = {0};
    ring_open(&r, dev, f.max_len);
    uint32_t limit = max_frame(r.fd, dev);
    for (uint32_t i = 0; i < f.n; i++) {
        if (f.len[i] > limit)
            die("%s: frame %u is %u bytes; %s takes at most %u (MTU + 14)", pcap, i + 1, f.len[i], dev, limit);
        if (f.len[i] < ETH_HLEN + (stamp ? STAMP_LEN : 0))
            die("%s: frame %u is %u bytes, too short%s", pcap, i + 1, f.len[i], stamp ? " for --stamp" : "");
    }

    uint64_t sent = 0, errors = 0, queued = 0, released = 0, next = 0;
    int err = 0;
    uint64_t start = now_ns(), stop = start + (uint64_t)(duration * 1e9), t;
    while ((t = now_ns()) < stop && (!count || queued < count) && !errors && !err) {
        reclaim(&r, &sent, &errors);
        uint64_t want = batch;
        if (rate > 0) {
            /* released: frames the schedule let go so far, queued or forgiven. */
            uint64_t due = (uint64_t)((double)(t - start) * rate / 1e9) + 1;
            if (due > released + batch)
                released = due - batch;  /* behind: no catching up beyond one batch */
            want = due - released;
        }
        if (count && want > count - queued)
            want = count - queued;
        if (want > RING_SLOTS - r.inflight)
            want = RING_SLOTS - r.inflight;
        for (uint64_t i = 0; i < want; i++) {
            queue_frame(&r, f.data[next], f.len[next], stamp);
            next = next + 1 == f.n ? 0 : next + 1;
        }
        queued += want;
        released += want;
        if (want || left_behind(&r))
            err = kick(&r);
        if (!want && rate > 0) {
            uint64_t due_at = start + (uint64_t)((double)released * 1e9 / rate);
            if (due_at > t + SLEEP_AHEAD_NS)
                sleep_until((due_at < stop ? due_at : stop) - SLEEP_AHEAD_NS / 2);  /* wake early: timer slack */
        }
    }
    double seconds = (double)(t - start) / 1e9;

    /* Frames still in the ring were queued in time: count those the kernel takes. */
    for (uint64_t drain_end = now_ns() + DRAIN_NS; r.inflight && !err && !errors && now_ns() < drain_end;) {
        if (left_behind(&r))
            err = kick(&r);
        reclaim(&r, &sent, &errors);
    }
    if (err)
        fprintf(stderr, "vtep-gen: sendto on %s: %s\n", dev, strerror(-err));
    if (errors)
        fprintf(stderr, "vtep-gen: the kernel refused a frame on %s (TP_STATUS_WRONG_FORMAT); stopped\n", dev);
    printf("{\"sent\": %lu, \"errors\": %lu, \"seconds\": %.6f, \"rate\": %.1f, \"offered_rate\": %.1f}\n", sent,
           errors, seconds, seconds > 0 ? (double)sent / seconds : 0.0, rate);
    return err || errors ? 1 : 0;
}
