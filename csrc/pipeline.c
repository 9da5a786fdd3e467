/* The burst pipeline: frames from an access port or from the underlay in,
 * output descriptors and per-frame verdicts out.  No allocation, no lock
 * taken while waiting, no syscall.
 *
 * Drop counting: every copy that could not go out counts one drop under its
 * reason (a frame stopped before replication is one copy), on the ingress
 * port's counters and, once known, the segment's. */
#include <errno.h>
#include "engine.h"
#include "tunnel.h"

struct burst {
    vtep_worker_t *w;
    vtep_engine_t *e;
    vtep_counters_t *in;        /* counters of the ingress port or the underlay */
    vtep_out_t *outs;
    uint32_t n_out;
    uint32_t max_out;
    uint32_t now;
    uint32_t pkt;               /* index of the frame being processed */
    uint64_t now_ns;            /* the worker's clock, for rate limits */
};

VTEP_INLINE vtep_drop_t count_drop(struct burst *b, vtep_counters_t *seg, vtep_drop_t why)
{
    VTEP_COUNTER_ADD(b->in->drops[why], 1);
    if (seg)
        VTEP_COUNTER_ADD(seg->drops[why], 1);
    return why;
}

VTEP_INLINE void count_tx(vtep_counters_t *c, uint32_t bytes)
{
    VTEP_COUNTER_ADD(c->tx_packets, 1);
    VTEP_COUNTER_ADD(c->tx_bytes, bytes);
}

VTEP_INLINE void count_rx(vtep_counters_t *c, uint32_t bytes)
{
    VTEP_COUNTER_ADD(c->rx_packets, 1);
    VTEP_COUNTER_ADD(c->rx_bytes, bytes);
}

VTEP_INLINE vtep_out_t *next_out(struct burst *b, vtep_counters_t *seg, uint8_t kind, uint32_t target,
                                 const uint8_t *data, uint32_t len)
{
    if (vtep_unlikely(b->n_out == b->max_out))
        return NULL;
    vtep_out_t *o = &b->outs[b->n_out++];
    o->data = data;
    o->data_len = (uint16_t)len;
    o->hdr_len = 0;
    o->pkt = (uint16_t)b->pkt;
    o->kind = kind;
    o->target = target;
    o->segment = (uint32_t)(seg - vtep_segment_block(b->w, 0));
    return o;
}

/* Deliver "f" to access port "port" as it is. */
VTEP_INLINE vtep_drop_t emit_port(struct burst *b, vtep_counters_t *seg, uint32_t port,
                                  const uint8_t *f, uint32_t len)
{
    if (!next_out(b, seg, VTEP_OUT_PORT, port, f, len))
        return VTEP_DROP_RING_FULL;
    count_tx(vtep_port_block(b->w, port), len);
    count_tx(seg, len);
    return VTEP_DROP_NONE;
}

/* Encapsulate "f" towards remote "rid" with "vni". */
VTEP_INLINE vtep_drop_t emit_remote(struct burst *b, const int ipv6, const struct vtep_segment *s,
                                    vtep_counters_t *seg, uint32_t rid, uint32_t vni,
                                    const uint8_t *f, uint32_t len, uint32_t hash)
{
    const struct vtep_remote *r = &b->e->remotes[rid];
    if (vtep_unlikely(!r->resolved))
        return VTEP_DROP_NO_NEIGHBOUR;
    vtep_out_t *o = next_out(b, seg, VTEP_OUT_UNDERLAY, rid, f, len);
    if (!o)
        return VTEP_DROP_RING_FULL;
    o->hdr_len = (uint16_t)vtep_encap_inline(&r->tunnel[s->encapsulation], ipv6, vni, f, len, hash, o->hdr);
    count_tx(vtep_underlay_block(b->w), o->hdr_len + len);
    count_tx(seg, o->hdr_len + len);
    return VTEP_DROP_NONE;
}

/* Learning the source MAC "src" of a frame from "binding" (vtep_fdb_pack
 * without the time), if the segment learns; "can_learn" is 0 for a sender
 * we could not send back to.  A probe and such a sender only ask.  Returns
 * whether the MAC-move policy drops the frame (vtep_fdb_judge: the MAC
 * belongs to another role). */
VTEP_INLINE int learn_source(struct burst *b, struct vtep_segment *s, vtep_counters_t *seg,
                             const uint8_t *src, uint64_t binding, int can_learn)
{
    if (!s->mac_learning)
        return 0;
    uint64_t key = vtep_eth_key(src);
    int verdict = can_learn && !b->w->probe ? vtep_fdb_learn(&s->fdb, key, binding, b->now)
                                            : vtep_fdb_claim(&s->fdb, key, binding, b->now);
    if (verdict == VTEP_LEARN_REFUSED && can_learn)
        VTEP_COUNTER_ADD(seg->learn_refused, 1);
    return verdict == VTEP_LEARN_FOREIGN;
}

/* GCRA: a BUM frame from a limited port passes if the port's schedule runs
 * no further ahead of now than its burst allows, and moves the schedule one
 * interval on (one CAS, shared by the workers polling the port).  A probe
 * only looks. */
VTEP_INLINE int bum_admit(struct vtep_bum_limit *l, uint64_t now, int probe)
{
    uint64_t tat = __atomic_load_n(&l->tat, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t due = tat > now ? tat : now;
        if (due - now > l->tolerance)
            return 0;
        if (probe || __atomic_compare_exchange_n(&l->tat, &tat, due + l->interval, 1, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED))
            return 1;
    }
}

/* Copy "f" to every port of "s" that a sender of class "from" may reach,
 * except "skip" (the ingress port, or UINT32_MAX); then, if "to_remotes", to
 * every remote on the segment's list (split horizon: never for frames that
 * came from the underlay).  Returns the frame's verdict. */
VTEP_INLINE vtep_drop_t flood(struct burst *b, const int ipv6, const struct vtep_segment *s,
                              vtep_counters_t *seg, uint8_t from, uint32_t skip,
                              const uint8_t *f, uint32_t len, uint32_t wire_len, int to_remotes)
{
    unsigned sent = 0, denied = 0;
    vtep_drop_t lost = VTEP_DROP_NONE, why;
    for (uint32_t k = 0; k < s->n_ports; k++) {
        uint32_t q = s->ports[k];
        if (q == skip)
            continue;
        if (!vtep_pvlan_allows(from, b->e->ports[q].pvlan_class)) {
            denied++;
            continue;
        }
        if ((why = emit_port(b, seg, q, f, len)))
            lost = count_drop(b, seg, why);
        else
            sent++;
    }
    if (to_remotes && s->n_remotes) {
        if (wire_len + s->overhead > b->e->p.underlay_mtu) {
            /* Too big for every remote: each of their copies counts. */
            for (uint32_t k = 0; k < s->n_remotes; k++)
                lost = count_drop(b, seg, VTEP_DROP_MTU);
        } else {
            uint32_t hash = vtep_flow_hash_inline(f, len);
            uint32_t vni = s->class_vni[from];
            for (uint32_t k = 0; k < s->n_remotes; k++) {
                if ((why = emit_remote(b, ipv6, s, seg, s->remotes[k], vni, f, len, hash)))
                    lost = count_drop(b, seg, why);
                else
                    sent++;
            }
        }
    }
    if (sent || lost)  /* lost copies were counted one by one */
        return sent ? VTEP_DROP_NONE : lost;
    return count_drop(b, seg, denied ? VTEP_DROP_PVLAN_DENY : VTEP_DROP_NO_DESTINATION);
}

/* One frame from access port "port_id" (bound to segment "s"). */
VTEP_INLINE vtep_drop_t access_one(struct burst *b, const int ipv6, uint32_t port_id,
                                   const struct vtep_port *port, struct vtep_bum_limit *bum,
                                   struct vtep_segment *s, vtep_counters_t *seg, const vtep_pkt_t *pkt)
{
    const uint8_t *f = pkt->data;
    uint32_t len = pkt->len;
    vtep_drop_t why;
    uint64_t v;
    uint8_t from = port->pvlan_class;
    /* The largest frame the underlay will carry: a super-frame's segment. */
    uint32_t wire_len = pkt->gso_size ? (uint32_t)pkt->gso_hdr_len + pkt->gso_size : len;
    count_rx(seg, len);
    if (len < VTEP_ETH_HLEN) {
        why = VTEP_DROP_RUNT;
        goto drop;
    }
    if (vtep_unlikely(len > 0xffff)) {  /* no link delivers more; outputs hold 16-bit lengths */
        why = VTEP_DROP_MTU;
        goto drop;
    }
    if (vtep_vlan_is_tag(vtep_eth_type(f)) || (pkt->flags & VTEP_PKT_VLAN)) {
        why = VTEP_DROP_VLAN_TAGGED;
        goto drop;
    }
    const uint8_t *dst = f, *src = f + VTEP_ETH_ALEN;
    if (vtep_eth_is_multicast(src) || vtep_eth_is_zero(src)) {
        why = VTEP_DROP_BAD_SRC_MAC;
        goto drop;
    }
    if (learn_source(b, s, seg, src, vtep_fdb_binding(vtep_fdb_pack(0, (uint16_t)port_id, 0, from)), 1)) {
        why = VTEP_DROP_FOREIGN_SRC_MAC;
        goto drop;
    }

    if (vtep_eth_is_multicast(dst) || !vtep_fdb_lookup(&s->fdb, vtep_eth_key(dst), b->now, &v)) {
        /* Only BUM frames of a limited port pay for the limit. */
        if (vtep_unlikely(bum->interval) && !bum_admit(bum, b->now_ns, b->w->probe)) {
            why = VTEP_DROP_BUM_RATE_LIMIT;
            goto drop;
        }
        return flood(b, ipv6, s, seg, from, port_id, f, len, wire_len, 1);
    }

    uint32_t target = vtep_fdb_target(v);
    if (vtep_fdb_flags(v) & VTEP_FDBF_REMOTE) {
        /* The remote MAC's role, when known, lets us drop here rather than
         * at the far end: forbidden unicast never costs the underlay. */
        if (!vtep_pvlan_allows(from, vtep_fdb_class(v))) {
            why = VTEP_DROP_PVLAN_DENY;
            goto drop;
        }
        if (wire_len + s->overhead > b->e->p.underlay_mtu) {
            why = VTEP_DROP_MTU;
            goto drop;
        }
        why = emit_remote(b, ipv6, s, seg, target, s->class_vni[from], f, len, vtep_flow_hash_inline(f, len));
    } else if (target == port_id) {
        why = VTEP_DROP_HAIRPIN;
    } else if (!vtep_pvlan_allows(from, b->e->ports[target].pvlan_class)) {
        why = VTEP_DROP_PVLAN_DENY;
    } else {
        why = emit_port(b, seg, target, f, len);
    }
    if (why == VTEP_DROP_NONE)
        return why;
drop:
    return count_drop(b, seg, why);
}

enum {
    PREFETCH_DATA = 8,  /* frames whose data is fetched ahead of the one in hand */
    PREFETCH_FDB = 4,   /* frames whose destination bucket is fetched ahead */
    RX_STAGE = 16,      /* underlay frames checked together before their FDB work */
};

VTEP_INLINE void prefetch_dst(const struct vtep_segment *s, const vtep_pkt_t *p)
{
    if (p->len >= VTEP_ETH_HLEN)
        vtep_map_prefetch(&s->fdb.map, vtep_eth_key(p->data));
}

VTEP_INLINE int access_burst(vtep_worker_t *w, const int ipv6, uint32_t port_id, const vtep_pkt_t *pkts,
                             uint32_t n, uint32_t now, vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts)
{
    vtep_engine_t *e = w->engine;
    struct burst b = {.w = w, .e = e, .outs = outs, .max_out = max_out, .now = now, .now_ns = w->now_ns};
    if (n > 0xffff || port_id >= e->p.max_ports)
        return -EINVAL;
    b.in = vtep_port_block(w, port_id);
    const struct vtep_port *port = &e->ports[port_id];
    struct vtep_bum_limit *bum = &e->bum[port_id];
    uint64_t rx_bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        rx_bytes += pkts[i].len;
    VTEP_COUNTER_ADD(b.in->rx_packets, n);
    VTEP_COUNTER_ADD(b.in->rx_bytes, rx_bytes);

    if (vtep_unlikely(!port->in_use)) {
        for (uint32_t i = 0; i < n; i++)
            verdicts[i] = (uint8_t)count_drop(&b, NULL, VTEP_DROP_NO_PORT);
        return 0;
    }
    struct vtep_segment *s = &e->segments[port->segment];
    vtep_counters_t *seg = vtep_segment_block(w, port->segment);
    /* Frames arrive cold and, in a big table, so do their destination
     * buckets: fetch frame data PREFETCH_DATA frames ahead and, once it is
     * there, the bucket PREFETCH_FDB frames ahead. */
    for (uint32_t i = 0; i < n && i < PREFETCH_DATA; i++)
        vtep_prefetch(pkts[i].data);
    for (uint32_t i = 0; i < n && i < PREFETCH_FDB; i++)
        prefetch_dst(s, &pkts[i]);
    for (uint32_t i = 0; i < n; i++) {
        if (i + PREFETCH_DATA < n)
            vtep_prefetch(pkts[i + PREFETCH_DATA].data);
        if (i + PREFETCH_FDB < n)
            prefetch_dst(s, &pkts[i + PREFETCH_FDB]);
        b.pkt = i;
        verdicts[i] = (uint8_t)access_one(&b, ipv6, port_id, port, bum, s, seg, &pkts[i]);
    }
    return (int)b.n_out;
}

int vtep_access_burst(vtep_worker_t *w, uint32_t port, const vtep_pkt_t *pkts, uint32_t n,
                      uint32_t now, vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts)
{
    return w->engine->p.local.family == 6 ? access_burst(w, 1, port, pkts, n, now, outs, max_out, verdicts)
                                          : access_burst(w, 0, port, pkts, n, now, outs, max_out, verdicts);
}

/* The remote whose address is "a", or -1. */
VTEP_INLINE int remote_find(const vtep_engine_t *e, const vtep_addr_t *a)
{
    vtep_map_slot_t *slot = vtep_map_find(&e->remote_map, vtep_addr_key(a->bytes, a->family));
    if (!slot || memcmp(e->remotes[slot->val].addr.bytes, a->bytes, vtep_addr_len(a->family)))
        return -1;
    return (int)slot->val;
}

/* An underlay frame that passed the checks, waiting for its FDB work. */
struct rx_frame {
    const uint8_t *inner;
    uint32_t inner_len;
    uint32_t seg_id;
    int rid;           /* the sending VTEP, or -1 if no table knows it */
    uint8_t from;      /* the sender's class, from the VNI */
};

/* Stage 1 for one underlay frame: the strict outer checks and the tables
 * that do not move under traffic (VNI map, remotes).  Fills "rx" and returns
 * VTEP_DROP_NONE, or counts and returns the drop. */
VTEP_INLINE vtep_drop_t underlay_check(struct burst *b, const vtep_pkt_t *pkt, struct rx_frame *rx)
{
    const vtep_engine_t *e = b->e;
    const uint8_t *f = pkt->data;
    uint32_t len = pkt->len;
    vtep_counters_t *seg = NULL;
    vtep_decap_info_t info;
    vtep_drop_t why = vtep_decap_inline(f, len, e->p.destination_port, &info, !(pkt->flags & VTEP_PKT_CSUM_OK));
    if (why)
        goto drop;
    if (pkt->flags & VTEP_PKT_VLAN) {  /* the underlay is untagged */
        why = VTEP_DROP_VLAN_TAGGED;
        goto drop;
    }
    if (info.dst.family != e->p.local.family
        || memcmp(info.dst.bytes, e->p.local.bytes, vtep_addr_len(info.dst.family))) {
        why = VTEP_DROP_NOT_LOCAL;
        goto drop;
    }
    vtep_map_slot_t *vs = vtep_map_find(&e->vni_map, vtep_vni_key(info.encapsulation, info.vni));
    if (!vs) {
        why = VTEP_DROP_UNKNOWN_VNI;
        goto drop;
    }
    rx->seg_id = (uint32_t)(vs->val >> 8);
    rx->from = (uint8_t)vs->val;  /* the VNI says what role the sender has */
    const struct vtep_segment *s = &e->segments[rx->seg_id];
    seg = vtep_segment_block(b->w, rx->seg_id);
    count_rx(seg, len);
    rx->rid = remote_find(e, &info.src);
    if (s->n_remotes && (rx->rid < 0 || !(s->remote_bits[rx->rid / 64] & 1ull << (rx->rid % 64)))) {
        why = VTEP_DROP_UNKNOWN_REMOTE;
        goto drop;
    }
    rx->inner = f + info.inner_offset;
    rx->inner_len = info.inner_len;
    if (vtep_vlan_is_tag(vtep_eth_type(rx->inner))) {
        why = VTEP_DROP_VLAN_TAGGED;
        goto drop;
    }
    const uint8_t *src = rx->inner + VTEP_ETH_ALEN;
    if (vtep_eth_is_multicast(src) || vtep_eth_is_zero(src)) {
        why = VTEP_DROP_BAD_SRC_MAC;
        goto drop;
    }
    /* Stage 2 will look both MACs up: start fetching their buckets. */
    vtep_map_prefetch(&s->fdb.map, vtep_eth_key(rx->inner));
    vtep_map_prefetch(&s->fdb.map, vtep_eth_key(src));
    return VTEP_DROP_NONE;
drop:
    return count_drop(b, seg, why);
}

/* Stage 2: learn the sender's MAC and forward the inner frame. */
VTEP_INLINE vtep_drop_t underlay_forward(struct burst *b, const struct rx_frame *rx)
{
    const vtep_engine_t *e = b->e;
    struct vtep_segment *s = &e->segments[rx->seg_id];
    vtep_counters_t *seg = vtep_segment_block(b->w, rx->seg_id);
    const uint8_t *dst = rx->inner, *src = rx->inner + VTEP_ETH_ALEN;
    vtep_drop_t why;
    /* Learn only from VTEPs we know: an address we have no template for
     * could not be sent to anyway.  The MAC-move policy holds for all. */
    uint16_t place = (uint16_t)(rx->rid < 0 ? 0 : rx->rid);  /* no place for an unknown VTEP: only judged */
    if (learn_source(b, s, seg, src, vtep_fdb_binding(vtep_fdb_pack(0, place, VTEP_FDBF_REMOTE, rx->from)),
                     rx->rid >= 0))
        return count_drop(b, seg, VTEP_DROP_FOREIGN_SRC_MAC);

    uint64_t v;
    if (vtep_eth_is_multicast(dst) || !vtep_fdb_lookup(&s->fdb, vtep_eth_key(dst), b->now, &v))
        return flood(b, 0, s, seg, rx->from, UINT32_MAX, rx->inner, rx->inner_len, rx->inner_len, 0);
    uint32_t target = vtep_fdb_target(v);
    if (vtep_fdb_flags(v) & VTEP_FDBF_REMOTE)
        why = VTEP_DROP_SPLIT_HORIZON;
    else if (!vtep_pvlan_allows(rx->from, e->ports[target].pvlan_class))
        why = VTEP_DROP_PVLAN_DENY;
    else
        why = emit_port(b, seg, target, rx->inner, rx->inner_len);
    return why == VTEP_DROP_NONE ? why : count_drop(b, seg, why);
}

int vtep_underlay_burst(vtep_worker_t *w, const vtep_pkt_t *pkts, uint32_t n, uint32_t now,
                        vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts)
{
    struct burst b = {.w = w, .e = w->engine, .outs = outs, .max_out = max_out, .now = now};
    if (n > 0xffff)
        return -EINVAL;
    b.in = vtep_underlay_block(w);
    uint64_t rx_bytes = 0;
    /* In stages of RX_STAGE frames: check them all (which prefetches their
     * FDB buckets), then learn and forward them in order.  Stage 1 reads no
     * FDB, so the result is the same as one frame at a time. */
    struct rx_frame stage[RX_STAGE];
    for (uint32_t base = 0; base < n; base += RX_STAGE) {
        uint32_t m = n - base < RX_STAGE ? n - base : RX_STAGE;
        for (uint32_t j = 0; j < m; j++) {
            uint32_t i = base + j;
            if (i + PREFETCH_DATA < n)
                vtep_prefetch(pkts[i + PREFETCH_DATA].data);
            rx_bytes += pkts[i].len;
            b.pkt = i;
            verdicts[i] = (uint8_t)underlay_check(&b, &pkts[i], &stage[j]);
        }
        for (uint32_t j = 0; j < m; j++) {
            b.pkt = base + j;
            if (verdicts[base + j] == VTEP_DROP_NONE)
                verdicts[base + j] = (uint8_t)underlay_forward(&b, &stage[j]);
        }
    }
    VTEP_COUNTER_ADD(b.in->rx_packets, n);
    VTEP_COUNTER_ADD(b.in->rx_bytes, rx_bytes);
    return (int)b.n_out;
}
