/* Worker loops: a C thread per worker that polls its I/O handles and runs
 * their bursts.  No Python, no allocation and no lock per packet; per pass,
 * one RX check per handle (no syscall for AF_PACKET rings) and one flush
 * per handle that has frames to send.  It sleeps in poll() only after a pass
 * that found nothing.
 *
 * Locking: the thread holds its worker's lock from start to stop and lets
 * go only between bursts, when the control thread asks (vtep_worker_yield;
 * see engine.h).  The control thread changes a loop's handles only while it
 * has paused the workers, so the thread never sees a table half-changed. */
#define _GNU_SOURCE  /* pthread_setname_np */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "engine.h"
#include "eth.h"
#include "gro.h"
#include "io.h"
#include "ipv6.h"
#include "offload.h"

enum { OUTS_PER_FRAME = 32, POLL_MS = 100 };

struct vtep_loop {
    vtep_engine_t *e;
    vtep_worker_t *w;
    uint32_t burst;
    vtep_io_t **ports;        /* by port id: this loop's handle, or NULL */
    vtep_io_t *underlay;
    uint32_t *active;         /* ids of the ports that have a handle */
    uint32_t n_active;
    int changed;              /* handles changed: rebuild the poll set */
    struct pollfd *pfds;      /* wake fd, underlay, then the active ports */
    uint32_t n_pfds;
    vtep_pkt_t *pkts;
    vtep_out_t *outs;
    uint32_t max_out;
    uint8_t *verdicts;
    uint8_t *sent;            /* per frame of the burst: a copy of it went out */
    vtep_io_t **dirty;        /* handles with frames to flush */
    uint32_t n_dirty;
    uint32_t stats_at;        /* when the kernel's RX drops were last read */
    pthread_t thread;
    int running;
    int stop;                 /* atomic */
};

vtep_loop_t *vtep_loop_new(vtep_engine_t *e, uint32_t burst, int *err)
{
    burst = burst ? burst : 64;
    *err = -EINVAL;
    if (burst > 256)
        return NULL;
    *err = -ENOMEM;
    vtep_loop_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->e = e;
    l->burst = burst;
    l->max_out = burst * OUTS_PER_FRAME;
    l->ports = calloc(e->p.max_ports, sizeof *l->ports);
    l->active = calloc(e->p.max_ports, sizeof *l->active);
    l->pfds = calloc(e->p.max_ports + 2, sizeof *l->pfds);
    l->dirty = calloc(e->p.max_ports + 1, sizeof *l->dirty);
    l->pkts = calloc(burst, sizeof *l->pkts);
    l->outs = calloc(l->max_out, sizeof *l->outs);
    l->verdicts = calloc(burst, 1);
    l->sent = calloc(burst, 1);
    l->w = vtep_worker_new(e);
    if (!l->ports || !l->active || !l->pfds || !l->dirty || !l->pkts || !l->outs || !l->verdicts || !l->sent || !l->w) {
        vtep_loop_free(l);
        return NULL;
    }
    l->w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->w->wake_fd < 0) {
        *err = -errno;
        vtep_loop_free(l);
        return NULL;
    }
    l->changed = 1;
    *err = 0;
    return l;
}

void vtep_loop_free(vtep_loop_t *l)
{
    if (!l)
        return;
    vtep_loop_stop(l);
    for (uint32_t i = 0; l->ports && i < l->e->p.max_ports; i++)
        vtep_io_close(l->ports[i]);
    vtep_io_close(l->underlay);
    if (l->w) {
        if (l->w->wake_fd >= 0)
            close(l->w->wake_fd);
        /* Its counters go with it: the daemon's loops live as long as the engine. */
        vtep_worker_free(l->w);
    }
    free(l->ports);
    free(l->active);
    free(l->pfds);
    free(l->dirty);
    free(l->pkts);
    free(l->outs);
    free(l->verdicts);
    free(l->sent);
    free(l);
}

int vtep_loop_attach_port(vtep_loop_t *l, uint32_t port, vtep_io_t *io)
{
    if (port >= l->e->p.max_ports || !io)
        return -EINVAL;
    if (l->ports[port])
        return -EEXIST;
    vtep_engine_pause(l->e);
    l->ports[port] = io;
    l->active[l->n_active++] = port;
    l->changed = 1;
    vtep_engine_resume(l->e);
    return 0;
}

int vtep_loop_detach_port(vtep_loop_t *l, uint32_t port)
{
    if (port >= l->e->p.max_ports || !l->ports[port])
        return -ENOENT;
    vtep_engine_pause(l->e);
    vtep_io_close(l->ports[port]);
    l->ports[port] = NULL;
    for (uint32_t i = 0; i < l->n_active; i++)
        if (l->active[i] == port)
            l->active[i] = l->active[--l->n_active];
    l->changed = 1;
    vtep_engine_resume(l->e);
    return 0;
}

int vtep_loop_attach_underlay(vtep_loop_t *l, vtep_io_t *io)
{
    if (!io)
        return -EINVAL;
    if (l->underlay)
        return -EEXIST;
    vtep_engine_pause(l->e);
    l->underlay = io;
    l->changed = 1;
    vtep_engine_resume(l->e);
    return 0;
}

static void rebuild_poll_set(vtep_loop_t *l)
{
    l->n_pfds = 0;
    l->pfds[l->n_pfds++] = (struct pollfd){.fd = l->w->wake_fd, .events = POLLIN};
    if (l->underlay)
        l->pfds[l->n_pfds++] = (struct pollfd){.fd = l->underlay->fd, .events = POLLIN};
    for (uint32_t i = 0; i < l->n_active; i++)
        l->pfds[l->n_pfds++] = (struct pollfd){.fd = l->ports[l->active[i]]->fd, .events = POLLIN};
    l->changed = 0;
}

static vtep_counters_t *block_of(vtep_loop_t *l, uint32_t port)
{
    return port == UINT32_MAX ? vtep_underlay_block(l->w) : vtep_port_block(l->w, port);
}

/* An output the pipeline counted as sent could not be: move it from the
 * destination's tx count to a drop on the ingress "in" and its segment,
 * where the pipeline counts every lost copy. */
static void count_lost(vtep_loop_t *l, vtep_counters_t *in, const vtep_out_t *o, vtep_drop_t why)
{
    uint32_t bytes = o->hdr_len + o->data_len;
    vtep_counters_t *to = o->kind == VTEP_OUT_PORT ? vtep_port_block(l->w, o->target) : vtep_underlay_block(l->w);
    vtep_counters_t *seg = vtep_segment_block(l->w, o->segment);
    VTEP_COUNTER_ADD(to->tx_packets, -1);
    VTEP_COUNTER_ADD(to->tx_bytes, -(uint64_t)bytes);
    VTEP_COUNTER_ADD(seg->tx_packets, -1);
    VTEP_COUNTER_ADD(seg->tx_bytes, -(uint64_t)bytes);
    VTEP_COUNTER_ADD(in->drops[why], 1);
    VTEP_COUNTER_ADD(seg->drops[why], 1);
}

static void mark_dirty(vtep_loop_t *l, vtep_io_t *io)
{
    if (io->kind != VTEP_IO_AFPACKET || io->flush_due)
        return;  /* TAP writes at once; a ring already on the list stays once */
    io->flush_due = 1;
    l->dirty[l->n_dirty++] = io;
}

static int emit_segment(void *io, const uint8_t *h, uint32_t h_len, const uint8_t *payload, uint32_t n)
{
    return vtep_io_tx(io, h, h_len, payload, n);
}

/* Compute the inner checksum the kernel left unfinished in frame "p", once
 * per frame: its outputs share its bytes. */
static void finish_csum(const vtep_out_t *o, vtep_pkt_t *p)
{
    if (vtep_unlikely(p->flags & VTEP_PKT_CSUM_PARTIAL)) {
        vtep_l4_csum_fill((uint8_t *)o->data, o->data_len);
        p->flags &= ~(uint32_t)VTEP_PKT_CSUM_PARTIAL;
    }
}

/* Super-frame "p" as it came, to a port that takes a virtio-net header:
 * the host behind it takes it whole, as from a local TCP's TSO.  Its
 * checksum is as the sender's kernel left it, for the receiver to finish. */
static int pass_super(vtep_io_t *to, const vtep_out_t *o, const vtep_pkt_t *p)
{
    const uint8_t *f = o->data;
    uint8_t type = p->gso_type & (uint8_t)~VTEP_VNET_GSO_ECN;
    int ipv6 = vtep_get_be16(f + 12) == VTEP_ETH_P_IPV6;  /* vtep_gso_headers checked it all */
    uint32_t l4 = VTEP_ETH_HLEN + (ipv6 ? VTEP_IPV6_HLEN : (f[VTEP_ETH_HLEN] & 0xfu) * 4);
    struct vtep_vnet_hdr vnet = {
        .flags = VTEP_VNET_NEEDS_CSUM, .gso_type = p->gso_type, .hdr_len = p->gso_hdr_len,
        .gso_size = p->gso_size, .csum_start = (uint16_t)l4, .csum_offset = type == VTEP_GSO_UDP_L4 ? 6 : 16,
    };
    struct iovec iov[2] = {{&vnet, VTEP_VNET_HDR_LEN}, {(void *)f, o->data_len}};
    return vtep_io_tx_super(to, iov, 2);
}

static int emit_packed(void *io, const struct iovec *iov, int n)
{
    return vtep_io_tx_super(io, iov, n);
}

/* Send output "o" of frame "p", finishing what the kernel left to offload:
 * a super-frame goes out in segments, or whole to a port that takes it,
 * or packed into UDP super-packets to an underlay that takes them
 * (offload.h); an unfinished inner checksum is computed. */
static int send_out(vtep_io_t *to, const vtep_out_t *o, vtep_pkt_t *p)
{
    finish_csum(o, p);
    if (vtep_likely(!p->gso_size))
        return vtep_io_tx(to, o->hdr, o->hdr_len, o->data, o->data_len);
    if (o->kind == VTEP_OUT_PORT && to->vnet && !o->hdr_len)
        return pass_super(to, o, p);
    int rc = -EPROTONOSUPPORT;
    if (o->kind == VTEP_OUT_UNDERLAY && to->vnet)
        rc = vtep_gso_pack(o->hdr, o->hdr_len, o->data, o->data_len, p->gso_hdr_len, p->gso_size, emit_packed, to);
    if (rc == -EPROTONOSUPPORT)  /* NVGRE: GRE has no such super-packet */
        rc = vtep_gso_segment(o->hdr, o->hdr_len, o->data, o->data_len, p->gso_hdr_len, p->gso_size,
                              emit_segment, to);
    return rc < 0 ? rc : 0;
}

/* Output "o" (decapsulated, toward "to") as a segment that may be joined
 * (gro.h), its checksum finished first if the kernel left it to us. */
static int joinable(vtep_io_t *to, const vtep_out_t *o, vtep_pkt_t *p, vtep_gro_seg_t *seg)
{
    if (o->hdr_len || p->gso_size || (to->kind == VTEP_IO_AFPACKET && o->data_len > to->max_frame))
        return 0;
    finish_csum(o, p);
    return vtep_gro_parse(o->data, o->data_len, seg);
}

/* Output "i" of an underlay burst toward a port that takes a virtio-net
 * header, and the outputs right after it that continue its TCP flow: one
 * super-frame (gro.h).  "*last" is the last output it sent; anything that
 * joins nothing goes out as send_out() sends it. */
static int send_joined(vtep_loop_t *l, vtep_io_t *to, int i, int n_out, int *last)
{
    const vtep_out_t *outs = l->outs;
    vtep_gro_seg_t segs[VTEP_GRO_MAX_SEGS];
    *last = i;
    if (!joinable(to, &outs[i], &l->pkts[outs[i].pkt], &segs[0]))
        return send_out(to, &outs[i], &l->pkts[outs[i].pkt]);
    uint32_t payload = segs[0].payload_len;
    int n = 1;
    while (i + n < n_out && n < VTEP_GRO_MAX_SEGS) {
        const vtep_out_t *o = &outs[i + n];
        if (o->kind != VTEP_OUT_PORT || o->target != outs[i].target
            || !joinable(to, o, &l->pkts[o->pkt], &segs[n])
            || !vtep_gro_follows(&segs[0], &segs[n - 1], &segs[n], payload))
            break;
        payload += segs[n++].payload_len;
    }
    if (n == 1)
        return send_out(to, &outs[i], &l->pkts[outs[i].pkt]);
    struct vtep_vnet_hdr vnet;
    uint8_t hdr[VTEP_ETH_HLEN + VTEP_IPV6_HLEN + 60];
    vtep_gro_headers(&segs[0], &segs[n - 1], payload, &vnet, hdr);
    struct iovec iov[VTEP_GRO_MAX_SEGS + 2] = {{&vnet, VTEP_VNET_HDR_LEN}, {hdr, segs[0].hdr_len}};
    for (int k = 0; k < n; k++)
        iov[k + 2] = (struct iovec){(void *)(segs[k].frame + segs[k].hdr_len), segs[k].payload_len};
    *last = i + n - 1;
    return vtep_io_tx_super(to, iov, n + 2);
}

/* One burst from handle "io" of port "port" (UINT32_MAX: the underlay).
 * Returns the frames it took. */
static uint32_t run_burst(vtep_loop_t *l, vtep_io_t *io, uint32_t port, uint32_t now)
{
    uint32_t oversize = 0;
    uint32_t n = vtep_io_rx(io, l->pkts, l->burst, &oversize);
    vtep_counters_t *in = block_of(l, port);
    if (vtep_unlikely(oversize)) {
        VTEP_COUNTER_ADD(in->rx_packets, oversize);
        VTEP_COUNTER_ADD(in->drops[VTEP_DROP_MTU], oversize);
    }
    if (n == 0) {
        vtep_io_rx_done(io);
        return oversize;
    }
    int n_out = port == UINT32_MAX
                    ? vtep_underlay_burst(l->w, l->pkts, n, now, l->outs, l->max_out, l->verdicts)
                    : vtep_access_burst(l->w, port, l->pkts, n, now, l->outs, l->max_out, l->verdicts);
    /* "forwarded" counts frames, not copies: a flooded frame is one frame
     * forwarded however many copies went, so that every frame received is
     * either forwarded or has at least one drop counted with its reason. */
    uint64_t forwarded = 0;
    memset(l->sent, 0, n);
    for (int i = 0; i < n_out; i++) {
        const vtep_out_t *o = &l->outs[i];
        vtep_io_t *to = o->kind == VTEP_OUT_PORT ? l->ports[o->target] : l->underlay;
        if (vtep_unlikely(!to)) {
            count_lost(l, in, o, VTEP_DROP_NO_PORT);
            continue;
        }
        int last = i;  /* the last output this send carries */
        int rc = port == UINT32_MAX && o->kind == VTEP_OUT_PORT && to->vnet
                     ? send_joined(l, to, i, n_out, &last)
                     : send_out(to, o, &l->pkts[o->pkt]);
        mark_dirty(l, to);  /* a super-frame may have queued segments before failing */
        for (; i <= last; i++) {
            o = &l->outs[i];
            if (vtep_unlikely(rc)) {
                count_lost(l, in, o, rc == -EMSGSIZE ? VTEP_DROP_MTU : VTEP_DROP_RING_FULL);
            } else if (!l->sent[o->pkt]) {
                l->sent[o->pkt] = 1;
                forwarded++;
                VTEP_COUNTER_ADD(vtep_segment_block(l->w, o->segment)->forwarded, 1);
            }
        }
        i = last;
    }
    VTEP_COUNTER_ADD(in->forwarded, forwarded);
    /* Outputs were copied out: the frames can go back to the kernel. */
    vtep_io_rx_done(io);
    /* A flush the kernel refused (link down) leaves its slots queued: the
     * next frame for that handle puts it on the list again. */
    for (uint32_t i = 0; i < l->n_dirty; i++) {
        l->dirty[i]->flush_due = 0;
        vtep_io_flush(l->dirty[i]);
    }
    l->n_dirty = 0;
    return n + oversize;
}

/* Once a second, the links: the kernel's RX ring drops and the MTU (a
 * getsockopt and an ioctl per handle). */
static void read_links(vtep_loop_t *l, uint32_t now)
{
    if (now == l->stats_at)
        return;
    l->stats_at = now;
    if (l->underlay) {
        VTEP_COUNTER_ADD(vtep_underlay_block(l->w)->drops[VTEP_DROP_RING_FULL], vtep_io_kernel_drops(l->underlay));
        vtep_io_read_mtu(l->underlay);
    }
    for (uint32_t i = 0; i < l->n_active; i++) {
        uint32_t port = l->active[i];
        VTEP_COUNTER_ADD(vtep_port_block(l->w, port)->drops[VTEP_DROP_RING_FULL],
                         vtep_io_kernel_drops(l->ports[port]));
        vtep_io_read_mtu(l->ports[port]);
    }
}

/* One reading per pass (vDSO, no syscall): seconds for the FDB, the
 * worker's ns clock for rate limits.  CLOCK_MONOTONIC is the clock
 * Python's time.monotonic() reads, which the control thread ages by. */
static uint32_t read_clock(vtep_worker_t *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    vtep_worker_set_clock(w, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    return (uint32_t)ts.tv_sec;
}

/* A link going down leaves ENETDOWN on its packet sockets, and poll()
 * reports POLLERR until someone reads it: read it, or the loop would spin
 * for as long as the link stays down.  The rings need nothing else: the
 * kernel resumes them when the link comes back.  (A TAP's fd is no socket:
 * getsockopt fails, and there is nothing to clear.) */
static void clear_errors(vtep_loop_t *l)
{
    for (uint32_t i = 1; i < l->n_pfds; i++) {
        if (l->pfds[i].revents & POLLERR) {
            int err;
            socklen_t len = sizeof err;
            (void)getsockopt(l->pfds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
    }
}

static void *loop_main(void *arg)
{
    vtep_loop_t *l = arg;
    pthread_mutex_lock(&l->w->lock);
    while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
        vtep_worker_yield(l->w);
        if (l->changed)
            rebuild_poll_set(l);
        uint32_t now = read_clock(l->w), got = 0;
        if (l->underlay)
            got += run_burst(l, l->underlay, UINT32_MAX, now);
        for (uint32_t i = 0; i < l->n_active; i++)
            got += run_burst(l, l->ports[l->active[i]], l->active[i], now);
        if (got)
            continue;
        read_links(l, now);
        if (poll(l->pfds, l->n_pfds, POLL_MS) > 0) {
            uint64_t v;
            if ((l->pfds[0].revents & POLLIN) && read(l->w->wake_fd, &v, sizeof v) < 0) {
                /* already drained */
            }
            clear_errors(l);
        }
    }
    pthread_mutex_unlock(&l->w->lock);
    return NULL;
}

int vtep_loop_start(vtep_loop_t *l)
{
    if (l->running)
        return -EALREADY;
    __atomic_store_n(&l->stop, 0, __ATOMIC_RELEASE);
    int rc = pthread_create(&l->thread, NULL, loop_main, l);
    if (rc)
        return -rc;
    /* So an operator (or a benchmark) can find and pin the packet threads
     * apart from the daemon's control thread: /proc/PID/task/TID/comm. */
    pthread_setname_np(l->thread, "vtep-worker");
    l->running = 1;
    return 0;
}

void vtep_loop_stop(vtep_loop_t *l)
{
    if (!l->running)
        return;
    __atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    if (write(l->w->wake_fd, &one, sizeof one) < 0) {
        /* the counter is saturated: poll sees it anyway */
    }
    pthread_join(l->thread, NULL);
    l->running = 0;
}
