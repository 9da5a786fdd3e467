/* nullfwd: the ceiling of an AF_PACKET dataplane on this machine.
 *
 * It moves frames between two links with vtepd's own rings (csrc/io_afpacket.c,
 * opened as the daemon opens an access port: TPACKET_V2 RX and TX rings,
 * virtio-net headers, qdisc bypass, no echo of our own frames, promiscuous)
 * and the shape of its worker loop (csrc/loop.c): per pass, one burst from
 * each handle, every frame copied into a TX slot of the other link, the
 * burst given back, one flush for the handle that got frames; poll() only
 * after a pass that found nothing.  There is no pipeline, so whatever vtepd
 * costs beyond this is its own.
 *
 * --workers N: N threads, each with its own handles on both links, joined in
 * PACKET_FANOUT groups named as vtepd names them (ifindex & 0xffff).
 *
 * --stack-bypass ADDR: keep VXLAN and GRE to ADDR that arrives on link b out
 * of the kernel's IP stack once the rings have it, as vtepd does for its
 * underlay (csrc/tunnel_bpf.h), so that both leave the kernel the same
 * work.
 *
 * Runs until SIGTERM or SIGINT, then prints one JSON line on stdout: frames
 * forwarded (queued for TX), dropped (no free TX slot, or too big for a
 * slot or for the outgoing link's MTU), and kernel_drops (lost because one of our RX rings was full).
 * "ready" on stderr once every handle is open and every thread runs. */
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include "io.h"
#include "tunnel_bpf.h"

enum { POLL_MS = 100, MAX_BURST = 256, MAX_WORKERS = 64 };

typedef struct nullfwd_worker {
    vtep_io_t *io[2];         /* link a, link b */
    uint32_t burst;
    const int *stop;          /* atomic; set by the main thread */
    pthread_t thread;
    /* Written by the worker's thread only, read after it is joined. */
    uint64_t forwarded, dropped, kernel_drops;
    uint32_t stats_at;
    vtep_pkt_t pkts[MAX_BURST];
} nullfwd_worker_t;

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nullfwd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

/* One burst from "from", copied to "to", as loop.c's run_burst() does it.
 * Returns the frames it took. */
static uint32_t forward_burst(nullfwd_worker_t *w, vtep_io_t *from, vtep_io_t *to)
{
    uint32_t oversize = 0, queued = 0;
    uint32_t n = vtep_io_rx(from, w->pkts, w->burst, &oversize);
    for (uint32_t i = 0; i < n; i++) {
        if (vtep_likely(vtep_io_tx(to, NULL, 0, w->pkts[i].data, w->pkts[i].len) == 0))
            queued++;
    }
    vtep_io_rx_done(from);
    if (queued)
        vtep_io_flush(to);
    w->forwarded += queued;
    w->dropped += n - queued + oversize;
    return n + oversize;
}

static void read_kernel_drops(nullfwd_worker_t *w)
{
    w->kernel_drops += vtep_io_kernel_drops(w->io[0]) + vtep_io_kernel_drops(w->io[1]);
}

static uint32_t now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  /* what loop.c reads every pass */
    return (uint32_t)ts.tv_sec;
}

static void *worker_main(void *arg)
{
    nullfwd_worker_t *w = arg;
    struct pollfd pfds[2] = {{.fd = w->io[0]->fd, .events = POLLIN}, {.fd = w->io[1]->fd, .events = POLLIN}};
    while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
        uint32_t now = now_seconds();
        uint32_t got = forward_burst(w, w->io[0], w->io[1]) + forward_burst(w, w->io[1], w->io[0]);
        if (got)
            continue;
        /* Like loop.c: the kernel's RX drops once a second, when idle. */
        if (now != w->stats_at) {
            w->stats_at = now;
            read_kernel_drops(w);
        }
        poll(pfds, 2, POLL_MS);
    }
    read_kernel_drops(w);  /* what the last second dropped */
    return NULL;
}

static uint32_t parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        die(2, "--%s %s: want an integer from %u to %u", opt, s, min, max);
    return (uint32_t)v;
}

static void usage(void)
{
    fputs("usage: nullfwd --a IFACE --b IFACE [--burst 64] [--frames N] [--frame-size 2048] [--workers 1]\n"
          "               [--stack-bypass ADDR]\n"
          "Forwards every frame a->b and b->a until SIGTERM/SIGINT, then prints\n"
          "{\"forwarded\": n, \"dropped\": n, \"kernel_drops\": n}.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"a", 1, 0, 'a'}, {"b", 1, 0, 'b'}, {"burst", 1, 0, 'u'}, {"frames", 1, 0, 'f'},
        {"frame-size", 1, 0, 's'}, {"workers", 1, 0, 'w'}, {"stack-bypass", 1, 0, 'x'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *ifname[2] = {NULL, NULL}, *bypass = NULL;
    uint32_t burst = 64, frames = 0, frame_size = 2048, n_workers = 1;  /* frames 0: vtepd's rings */
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': ifname[0] = optarg; break;
        case 'b': ifname[1] = optarg; break;
        case 'u': burst = parse_u32("burst", optarg, 1, MAX_BURST); break;
        case 'f': frames = parse_u32("frames", optarg, 8, 1 << 20); break;
        case 's': frame_size = parse_u32("frame-size", optarg, 128, 1 << 16); break;
        case 'w': n_workers = parse_u32("workers", optarg, 1, MAX_WORKERS); break;
        case 'x': bypass = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || !ifname[0] || !ifname[1])
        usage();
    if (!strcmp(ifname[0], ifname[1]))
        die(2, "--a and --b name the same link");

    vtep_afpacket_params_t params[2];
    for (int k = 0; k < 2; k++) {
        unsigned ifindex = if_nametoindex(ifname[k]);
        if (!ifindex)
            die(2, "%s: no such interface", ifname[k]);
        /* vtepd's access port: dataplane/datapath.py names the group the same way. */
        params[k] = (vtep_afpacket_params_t){
            .ifname = ifname[k], .frame_size = frame_size, .frames = frames,
            .fanout_group = n_workers > 1 ? (uint16_t)(ifindex & 0xffff) : 0, .promiscuous = 1, .offload = 1,
        };
    }

    /* Threads inherit the mask: only sigwait() below sees the signals.  An
     * ignored signal is never pending, and a shell starts background jobs
     * with SIGINT ignored: back to the default, which blocking keeps from
     * acting. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);

    int stop = 0, err;
    nullfwd_worker_t *workers = calloc(n_workers, sizeof *workers);
    if (!workers)
        die(1, "out of memory");
    for (uint32_t i = 0; i < n_workers; i++) {
        nullfwd_worker_t *w = &workers[i];
        w->burst = burst;
        w->stop = &stop;
        for (int k = 0; k < 2; k++)
            if (!(w->io[k] = vtep_io_afpacket_open(&params[k], &err)))
                die(1, "%s: %s", ifname[k], strerror(-err));
    }
    if (bypass) {
        vtep_addr_t local = {.family = strchr(bypass, ':') ? 6 : 4};
        if (inet_pton(local.family == 4 ? AF_INET : AF_INET6, bypass, local.bytes) != 1)
            die(2, "--stack-bypass: %s is no IP address", bypass);
        if ((err = vtep_stack_bypass((int)if_nametoindex(ifname[1]), &local, 4789)) < 0)
            die(1, "--stack-bypass: %s", strerror(-err));
    }
    for (uint32_t i = 0; i < n_workers; i++)
        if ((err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i])))
            die(1, "pthread_create: %s", strerror(err));
    fputs("ready\n", stderr);

    int sig;
    sigwait(&sigs, &sig);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    uint64_t forwarded = 0, dropped = 0, kernel_drops = 0;
    for (uint32_t i = 0; i < n_workers; i++) {
        nullfwd_worker_t *w = &workers[i];
        pthread_join(w->thread, NULL);
        forwarded += w->forwarded;
        dropped += w->dropped;
        kernel_drops += w->kernel_drops;
        vtep_io_close(w->io[0]);
        vtep_io_close(w->io[1]);
    }
    free(workers);
    printf("{\"forwarded\": %lu, \"dropped\": %lu, \"kernel_drops\": %lu}\n", forwarded, dropped, kernel_drops);
    return 0;
}
