/* vtep-sink: counts the frames a link receives and measures one-way latency
 * on those that carry vtep-gen's trailer (perf/gen.c --stamp): the last 16
 * bytes are STAMP_MAGIC then the CLOCK_MONOTONIC time the generator queued
 * the frame, both big-endian.
 *
 * Two latencies per stamped frame, both against CLOCK_MONOTONIC:
 * - latency_ns: the time read right after the frame shows up in our RX ring,
 *   minus the stamp.  What an application on the link sees, including our
 *   own wake-up when the ring was empty.
 * - ring_latency_ns: the kernel's receive time in the ring slot, minus the
 *   stamp.  The path alone: on two busy CPUs our wake-up can take a
 *   scheduler tick, and this leaves it out.  The slot's time is
 *   CLOCK_REALTIME; it is converted with the REALTIME - MONOTONIC offset read
 *   at the start (it changes only if someone sets the clock).
 * Both ends must share the clock: same machine, no time namespace.
 *
 * For latency trials only: the ring copies every frame, which costs the
 * sender's CPU, so throughput is better read from the link's counters.
 *
 * Runs for --duration seconds after it prints "ready" on stderr (or until
 * SIGTERM/SIGINT), then prints one JSON line on stdout; percentiles are over
 * the first MAX_SAMPLES stamped frames, null without any. */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

enum { RING_FRAMES = 8192, FRAME_SIZE = 2048, MAX_SAMPLES = 4 << 20, STAMP_LEN = 16, POLL_MS = 100 };
#define STAMP_MAGIC 0x7674657073746d70ull  /* "vtepstmp" */

typedef struct sink_samples {
    uint64_t *v;              /* MAX_SAMPLES, touched before the trial */
    uint64_t n;
} sink_samples_t;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vtep-sink: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, read between two MONOTONIC reads. */
static uint64_t realtime_offset(void)
{
    uint64_t before = now_ns(), real = clock_ns(CLOCK_REALTIME), after = now_ns();
    return real - before / 2 - after / 2;
}

/* Host-order value of the 64-bit big-endian field at "p" (any alignment). */
static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

/* A TPACKET_V2 RX ring on "ifname", promiscuous, every protocol.  Returns
 * the socket; "*ring" is the mapping. */
static int ring_open(const char *ifname, uint8_t **ring)
{
    unsigned ifindex = if_nametoindex(ifname);
    if (!ifindex)
        die("%s: no such interface", ifname);
    /* Protocol 0 until bound: no frame arrives before the ring exists. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket(AF_PACKET): %s", strerror(errno));
    int v2 = TPACKET_V2, one = 1;
    struct tpacket_req req = {
        .tp_block_size = 4096, .tp_block_nr = RING_FRAMES * FRAME_SIZE / 4096,
        .tp_frame_size = FRAME_SIZE, .tp_frame_nr = RING_FRAMES,
    };
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v2, sizeof v2) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
        die("%s: setsockopt: %s", ifname, strerror(errno));
    *ring = mmap(NULL, (size_t)RING_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (*ring == MAP_FAILED)
        die("%s: mmap: %s", ifname, strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex};
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        die("%s: bind: %s", ifname, strerror(errno));
    struct packet_mreq mr = {.mr_ifindex = (int)ifindex, .mr_type = PACKET_MR_PROMISC};
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
        die("%s: promiscuous: %s", ifname, strerror(errno));
    return fd;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest of the "n" sorted samples with at least
 * "per_mille" of them at or below it. */
static uint64_t percentile(const uint64_t *sorted, uint64_t n, uint64_t per_mille)
{
    uint64_t rank = (n * per_mille + 999) / 1000;
    return sorted[rank ? rank - 1 : 0];
}

static void samples_init(sink_samples_t *s)
{
    /* Populated now, so that no page fault lands in the measurement. */
    s->v = mmap(NULL, MAX_SAMPLES * sizeof *s->v, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (s->v == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    s->n = 0;
}

static void samples_add(sink_samples_t *s, uint64_t v)
{
    if (s->n < MAX_SAMPLES)
        s->v[s->n++] = v;
}

static void samples_print(const char *name, sink_samples_t *s)
{
    printf(", \"%s\": ", name);
    if (!s->n) {
        printf("{\"p50\": null, \"p90\": null, \"p99\": null, \"max\": null}");
        return;
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    printf("{\"p50\": %lu, \"p90\": %lu, \"p99\": %lu, \"max\": %lu}", percentile(s->v, s->n, 500),
           percentile(s->v, s->n, 900), percentile(s->v, s->n, 990), s->v[s->n - 1]);
}

static void usage(void)
{
    fputs("usage: vtep-sink --dev IFACE --duration SECONDS\n"
          "Counts frames on IFACE and the latency of those vtep-gen --stamp marked, then prints\n"
          "{\"received\": n, \"stamped\": n, \"kernel_drops\": n,"
          " \"latency_ns\": {\"p50\": ns, \"p90\": ns, \"p99\": ns, \"max\": ns}, \"ring_latency_ns\": {...}}.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dev", 1, 0, 'd'}, {"duration", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *dev = NULL;
    double duration = -1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dev = optarg; break;
        case 't': {
            char *end;
            duration = strtod(optarg, &end);
            if (end == optarg || *end || !(duration > 0 && duration <= 1e6))
                die("--duration %s: want seconds, more than 0", optarg);
            break;
        }
        default: usage();
        }
    }
    if (optind != argc || !dev || duration < 0)
        usage();

    sink_samples_t latency, ring_latency;
    samples_init(&latency);
    samples_init(&ring_latency);
    struct sigaction sa = {.sa_handler = on_signal};  /* no SA_RESTART: poll() returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    uint8_t *ring;
    int fd = ring_open(dev, &ring);
    fputs("ready\n", stderr);

    uint64_t received = 0, stamped = 0, offset = realtime_offset();
    uint32_t head = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (uint64_t stop = now_ns() + (uint64_t)(duration * 1e9); !stop_signal;) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(ring + (size_t)head * FRAME_SIZE);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            uint64_t t = now_ns();
            if (t >= stop)
                break;
            uint64_t left_ms = (stop - t) / 1000000 + 1;
            poll(&pfd, 1, left_ms < POLL_MS ? (int)left_ms : POLL_MS);
            continue;
        }
        uint64_t t = now_ns();
        received++;
        const uint8_t *frame = (const uint8_t *)h + h->tp_mac;
        uint32_t len = h->tp_snaplen;
        /* A trailer only at the end of a whole frame; a stamp later than the
         * receive times is not ours (or someone set the clock). */
        if (len == h->tp_len && len >= STAMP_LEN && get_be64(frame + len - STAMP_LEN) == STAMP_MAGIC) {
            uint64_t sent_at = get_be64(frame + len - 8);
            uint64_t ring_at = (uint64_t)h->tp_sec * 1000000000u + h->tp_nsec - offset;
            if (sent_at <= ring_at && ring_at <= t) {
                stamped++;
                samples_add(&latency, t - sent_at);
                samples_add(&ring_latency, ring_at - sent_at);
            }
        }
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        head = (head + 1) % RING_FRAMES;
    }

    struct tpacket_stats st = {0};
    socklen_t st_len = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &st_len);
    printf("{\"received\": %lu, \"stamped\": %lu, \"kernel_drops\": %u", received, stamped, st.tp_drops);
    samples_print("latency_ns", &latency);
    samples_print("ring_latency_ns", &ring_latency);
    puts("}");
    return 0;
}
