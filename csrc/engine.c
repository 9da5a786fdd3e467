/* Tables: the control thread's side of the engine (see vtep.h for the API
 * contract and the threading rules). */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>
#include "engine.h"
#include "eth.h"
#include "vxlan.h"

int vtep_pvlan_allows(uint8_t from, uint8_t to)
{
    /* RFC 5517: promiscuous talks to all; a community talks to itself and
     * to promiscuous; isolated only to promiscuous.  An unknown role is
     * allowed: the receiving VTEP, which knows it, decides. */
    return from == VTEP_CLASS_PROMISCUOUS || to == VTEP_CLASS_PROMISCUOUS
        || from == VTEP_CLASS_UNKNOWN || to == VTEP_CLASS_UNKNOWN
        || (from == to && from >= VTEP_CLASS_COMMUNITY);
}

vtep_engine_t *vtep_engine_new(const vtep_engine_params_t *p, int *err)
{
    *err = -EINVAL;
    if (p->max_ports == 0 || p->max_ports > 0xffff || p->max_segments == 0
        || p->max_segments > 0xffff || p->max_remotes == 0 || p->max_remotes > 0xffff
        || (p->local.family != 4 && p->local.family != 6) || p->ttl == 0
        || p->port_min > p->port_max || p->underlay_mtu < 68)
        return NULL;
    *err = -ENOMEM;
    vtep_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->p = *p;
    pthread_mutex_init(&e->pause_lock, NULL);
    e->n_blocks = p->max_ports + 1 + p->max_segments;
    e->ports = calloc(p->max_ports, sizeof *e->ports);
    if (posix_memalign((void **)&e->bum, 64, p->max_ports * sizeof *e->bum) == 0)
        memset(e->bum, 0, p->max_ports * sizeof *e->bum);
    else
        e->bum = NULL;
    e->segments = calloc(p->max_segments, sizeof *e->segments);
    e->remotes = calloc(p->max_remotes, sizeof *e->remotes);
    if (!e->ports || !e->bum || !e->segments || !e->remotes
        || vtep_map_init(&e->vni_map, p->max_segments * (uint32_t)VTEP_CLASS_COUNT) < 0
        || vtep_map_init(&e->remote_map, p->max_remotes) < 0) {
        vtep_engine_free(e);
        return NULL;
    }
    *err = 0;
    return e;
}

static void segment_free(struct vtep_segment *s)
{
    vtep_fdb_free(&s->fdb);
    free(s->ports);
    free(s->remotes);
    free(s->remote_bits);
    memset(s, 0, sizeof *s);
}

void vtep_engine_free(vtep_engine_t *e)
{
    if (!e)
        return;
    for (uint32_t i = 0; e->segments && i < e->p.max_segments; i++)
        if (e->segments[i].in_use)
            segment_free(&e->segments[i]);
    while (e->workers)
        vtep_worker_free(e->workers);
    vtep_map_free(&e->vni_map);
    vtep_map_free(&e->remote_map);
    free(e->ports);
    free(e->bum);
    free(e->segments);
    free(e->remotes);
    pthread_mutex_destroy(&e->pause_lock);
    free(e);
}

void vtep_engine_pause(vtep_engine_t *e)
{
    if (e->pause_depth++)
        return;
    pthread_mutex_lock(&e->pause_lock);
    __atomic_store_n(&e->pausing, 1, __ATOMIC_SEQ_CST);
    for (vtep_worker_t *w = e->workers; w; w = w->next) {
        if (w->wake_fd >= 0) {
            uint64_t one = 1;
            if (write(w->wake_fd, &one, sizeof one) < 0) {
                /* the counter is saturated: it is readable anyway */
            }
        }
        pthread_mutex_lock(&w->lock);
    }
}

void vtep_engine_resume(vtep_engine_t *e)
{
    if (--e->pause_depth)
        return;
    for (vtep_worker_t *w = e->workers; w; w = w->next)
        pthread_mutex_unlock(&w->lock);
    __atomic_store_n(&e->pausing, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&e->pause_lock);
}

int vtep_worker_yield(vtep_worker_t *w)
{
    vtep_engine_t *e = w->engine;
    if (vtep_likely(!__atomic_load_n(&e->pausing, __ATOMIC_ACQUIRE)))
        return 0;
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_lock(&e->pause_lock);   /* held by the control thread until resume */
    pthread_mutex_unlock(&e->pause_lock);
    pthread_mutex_lock(&w->lock);
    return 1;
}

/* (Re)build the templates of remote "r" from the engine's settings. */
static void remote_build(vtep_engine_t *e, struct vtep_remote *r, const uint8_t *next_hop)
{
    vtep_tunnel_params_t tp = {
        .local = e->p.local,
        .remote = r->addr,
        .destination_port = e->p.destination_port,
        .port_min = e->p.port_min,
        .port_max = e->p.port_max,
        .ttl = e->p.ttl,
        .udp_checksum = e->p.udp_checksum,
    };
    memcpy(tp.src_mac, e->p.underlay_mac, 6);
    if (next_hop)
        memcpy(tp.dst_mac, next_hop, 6);
    for (int enc = VTEP_ENCAP_VXLAN; enc <= VTEP_ENCAP_NVGRE; enc++) {
        tp.encapsulation = (vtep_encap_t)enc;
        vtep_tunnel_init(&r->tunnel[enc], &tp);  /* params were checked by the engine */
    }
    r->resolved = next_hop != NULL;
}

static int engine_set_underlay_paused(vtep_engine_t *e, const uint8_t mac[6], uint16_t mtu)
{
    if (mtu < 68)
        return -EINVAL;
    memcpy(e->p.underlay_mac, mac, 6);
    e->p.underlay_mtu = mtu;
    /* Only our own MAC changed: patch the outer Ethernet source of every
     * template and keep the next hops (unresolved ones get it when built). */
    for (uint32_t i = 0; i < e->n_remotes; i++)
        for (int enc = VTEP_ENCAP_VXLAN; enc <= VTEP_ENCAP_NVGRE; enc++)
            memcpy(((struct vtep_eth_hdr *)e->remotes[i].tunnel[enc].tmpl)->src, mac, VTEP_ETH_ALEN);
    return 0;
}

static struct vtep_segment *segment_get(vtep_engine_t *e, uint32_t seg)
{
    return seg < e->p.max_segments && e->segments[seg].in_use ? &e->segments[seg] : NULL;
}

static int segment_add_paused(vtep_engine_t *e, const vtep_segment_params_t *p)
{
    if ((p->encapsulation != VTEP_ENCAP_VXLAN && p->encapsulation != VTEP_ENCAP_NVGRE)
        || p->n_communities > VTEP_MAX_COMMUNITIES || p->maximum_fdb_entries == 0)
        return -EINVAL;
    uint32_t vnis[VTEP_CLASS_COUNT];
    for (int c = 0; c < VTEP_CLASS_COUNT; c++)
        vnis[c] = VTEP_VNI_NONE;
    vnis[VTEP_CLASS_PROMISCUOUS] = p->vni;
    vnis[VTEP_CLASS_ISOLATED] = p->isolated_vni;
    for (uint32_t i = 0; i < p->n_communities; i++)
        vnis[VTEP_CLASS_COMMUNITY + i] = p->community_vni[i];
    /* Every VNI valid, unused elsewhere, and distinct within the segment. */
    for (int c = VTEP_CLASS_PROMISCUOUS; c < VTEP_CLASS_COUNT; c++) {
        if (vnis[c] == VTEP_VNI_NONE)
            continue;
        if (vnis[c] > VTEP_VNI_MAX)
            return -EINVAL;
        if (vtep_map_find(&e->vni_map, vtep_vni_key((uint8_t)p->encapsulation, vnis[c])))
            return -EEXIST;
        for (int d = VTEP_CLASS_PROMISCUOUS; d < c; d++)
            if (vnis[d] == vnis[c])
                return -EEXIST;
    }
    if (p->vni == VTEP_VNI_NONE)
        return -EINVAL;

    uint32_t id = 0;
    while (id < e->p.max_segments && e->segments[id].in_use)
        id++;
    if (id == e->p.max_segments)
        return -ENOSPC;
    struct vtep_segment *s = &e->segments[id];
    s->ports = calloc(e->p.max_ports, sizeof *s->ports);
    s->remotes = calloc(e->p.max_remotes, sizeof *s->remotes);
    s->remote_bits = calloc((e->p.max_remotes + 63) / 64, sizeof *s->remote_bits);
    if (!s->ports || !s->remotes || !s->remote_bits
        || vtep_fdb_init(&s->fdb, p->maximum_fdb_entries, p->fdb_ageing_sec) < 0) {
        segment_free(s);
        return -ENOMEM;
    }
    s->in_use = 1;
    s->encapsulation = (uint8_t)p->encapsulation;
    s->mac_learning = p->mac_learning;
    unsigned ip_len = e->p.local.family == 6 ? 40 : 20;
    s->overhead = (uint8_t)(ip_len + (p->encapsulation == VTEP_ENCAP_VXLAN ? 16 : 8));
    memcpy(s->class_vni, vnis, sizeof vnis);
    for (int c = VTEP_CLASS_PROMISCUOUS; c < VTEP_CLASS_COUNT; c++)
        if (vnis[c] != VTEP_VNI_NONE)
            vtep_map_insert(&e->vni_map, vtep_vni_key(s->encapsulation, vnis[c]),
                            (uint64_t)id << 8 | (uint64_t)c);
    return (int)id;
}

static int segment_del_paused(vtep_engine_t *e, uint32_t seg)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s)
        return -ENOENT;
    if (s->n_ports)
        return -EBUSY;
    for (int c = VTEP_CLASS_PROMISCUOUS; c < VTEP_CLASS_COUNT; c++)
        if (s->class_vni[c] != VTEP_VNI_NONE)
            vtep_map_delete(&e->vni_map,
                            vtep_map_find(&e->vni_map, vtep_vni_key(s->encapsulation, s->class_vni[c])));
    segment_free(s);
    return 0;
}

static int segment_add_remote_paused(vtep_engine_t *e, uint32_t seg, uint32_t remote)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s || remote >= e->n_remotes)
        return -ENOENT;
    if (s->remote_bits[remote / 64] & 1ull << (remote % 64))
        return -EEXIST;
    s->remote_bits[remote / 64] |= 1ull << (remote % 64);
    s->remotes[s->n_remotes++] = (uint16_t)remote;
    return 0;
}

static int segment_del_remote_paused(vtep_engine_t *e, uint32_t seg, uint32_t remote)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s || remote >= e->n_remotes || !(s->remote_bits[remote / 64] & 1ull << (remote % 64)))
        return -ENOENT;
    s->remote_bits[remote / 64] &= ~(1ull << (remote % 64));
    for (uint32_t i = 0; i < s->n_remotes; i++)
        if (s->remotes[i] == remote) {
            /* Keep the order: flooding follows the configured list. */
            memmove(&s->remotes[i], &s->remotes[i + 1], (s->n_remotes - i - 1) * sizeof *s->remotes);
            s->n_remotes--;
            break;
        }
    return 0;
}

static int remote_add_paused(vtep_engine_t *e, const vtep_addr_t *addr)
{
    if (addr->family != e->p.local.family)
        return -EINVAL;
    vtep_map_slot_t *slot = vtep_map_find(&e->remote_map, vtep_addr_key(addr->bytes, addr->family));
    if (slot)
        return (int)slot->val;
    if (e->n_remotes == e->p.max_remotes)
        return -ENOSPC;
    uint32_t id = e->n_remotes++;
    struct vtep_remote *r = &e->remotes[id];
    r->in_use = 1;
    r->addr = *addr;
    remote_build(e, r, NULL);
    vtep_map_insert(&e->remote_map, vtep_addr_key(addr->bytes, addr->family), id);
    return (int)id;
}

static int remote_set_neighbour_paused(vtep_engine_t *e, uint32_t remote, const uint8_t *mac)
{
    if (remote >= e->n_remotes)
        return -ENOENT;
    remote_build(e, &e->remotes[remote], mac);
    return 0;
}

static int port_add_paused(vtep_engine_t *e, uint32_t seg, uint8_t pvlan_class)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s)
        return -ENOENT;
    if (pvlan_class == VTEP_CLASS_UNKNOWN || pvlan_class >= VTEP_CLASS_COUNT
        || s->class_vni[pvlan_class] == VTEP_VNI_NONE)
        return -EINVAL;
    uint32_t id = 0;
    while (id < e->p.max_ports && e->ports[id].in_use)
        id++;
    if (id == e->p.max_ports)
        return -ENOSPC;
    e->ports[id] = (struct vtep_port){.in_use = 1, .pvlan_class = pvlan_class, .segment = (uint16_t)seg};
    memset(&e->bum[id], 0, sizeof e->bum[id]);  /* a new port has no limit */
    s->ports[s->n_ports++] = (uint16_t)id;
    return (int)id;
}

/* Remove every entry of "s" for which "doomed" holds; returns how many. */
static int fdb_remove_if(struct vtep_segment *s, int (*doomed)(uint64_t val, uint64_t arg), uint64_t arg)
{
    vtep_fdb_t *f = &s->fdb;
    int n = 0;
    vtep_fdb_lock(f);
    for (uint64_t i = 0; i <= f->map.mask; i++) {
        /* A backward shift may move an unvisited entry into slot i: look again. */
        while (f->map.slots[i].key && doomed(f->map.slots[i].val, arg)) {
            vtep_fdb_delete_locked(f, &f->map.slots[i]);
            n++;
        }
    }
    vtep_fdb_unlock(f);
    return n;
}

static int on_port(uint64_t val, uint64_t port)
{
    return !(vtep_fdb_flags(val) & VTEP_FDBF_REMOTE) && vtep_fdb_target(val) == port;
}

static int port_del_paused(vtep_engine_t *e, uint32_t port)
{
    if (port >= e->p.max_ports || !e->ports[port].in_use)
        return -ENOENT;
    struct vtep_segment *s = &e->segments[e->ports[port].segment];
    for (uint32_t i = 0; i < s->n_ports; i++)
        if (s->ports[i] == port)
            s->ports[i] = s->ports[--s->n_ports];
    fdb_remove_if(s, on_port, port);
    e->ports[port].in_use = 0;
    return 0;
}

static int port_set_bum_limit_paused(vtep_engine_t *e, uint32_t port, uint32_t rate, uint32_t burst)
{
    if (port >= e->p.max_ports || !e->ports[port].in_use)
        return -ENOENT;
    if (rate > VTEP_BUM_RATE_MAX)
        return -EINVAL;
    struct vtep_bum_limit *l = &e->bum[port];
    if (rate == 0) {
        memset(l, 0, sizeof *l);
        return 0;
    }
    if (burst == 0)
        burst = rate / 10 ? rate / 10 : 1;
    l->interval = (1000000000ull + rate / 2) / rate;  /* rounded: at most 0.5% off at the top rate */
    l->tolerance = (uint64_t)(burst - 1) * l->interval;
    l->tat = 0;  /* a full burst */
    return 0;
}

/* The table changes that workers must not see half-done: each runs with
 * the workers paused between bursts. */
#define PAUSED(e, call) __extension__({ \
    vtep_engine_pause(e);               \
    int rc_ = (call);                   \
    vtep_engine_resume(e);              \
    rc_;                                \
})

int vtep_engine_set_underlay(vtep_engine_t *e, const uint8_t mac[6], uint16_t mtu)
{
    return PAUSED(e, engine_set_underlay_paused(e, mac, mtu));
}

int vtep_segment_add(vtep_engine_t *e, const vtep_segment_params_t *p)
{
    return PAUSED(e, segment_add_paused(e, p));
}

int vtep_segment_del(vtep_engine_t *e, uint32_t seg)
{
    return PAUSED(e, segment_del_paused(e, seg));
}

int vtep_segment_add_remote(vtep_engine_t *e, uint32_t seg, uint32_t remote)
{
    return PAUSED(e, segment_add_remote_paused(e, seg, remote));
}

int vtep_remote_add(vtep_engine_t *e, const vtep_addr_t *addr)
{
    return PAUSED(e, remote_add_paused(e, addr));
}

int vtep_remote_set_neighbour(vtep_engine_t *e, uint32_t remote, const uint8_t *mac)
{
    return PAUSED(e, remote_set_neighbour_paused(e, remote, mac));
}

int vtep_port_add(vtep_engine_t *e, uint32_t seg, uint8_t pvlan_class)
{
    return PAUSED(e, port_add_paused(e, seg, pvlan_class));
}

int vtep_port_del(vtep_engine_t *e, uint32_t port)
{
    return PAUSED(e, port_del_paused(e, port));
}

int vtep_port_set_bum_limit(vtep_engine_t *e, uint32_t port, uint32_t rate, uint32_t burst)
{
    return PAUSED(e, port_set_bum_limit_paused(e, port, rate, burst));
}

int vtep_segment_del_remote(vtep_engine_t *e, uint32_t seg, uint32_t remote)
{
    return PAUSED(e, segment_del_remote_paused(e, seg, remote));
}

static void entry_unpack(uint64_t key, uint64_t v, vtep_fdb_entry_t *out)
{
    for (int i = 0; i < 6; i++)
        out->mac[i] = (uint8_t)(key >> (40 - 8 * i));
    out->kind = vtep_fdb_flags(v) & VTEP_FDBF_REMOTE ? VTEP_FDB_REMOTE : VTEP_FDB_LOCAL;
    out->is_static = (vtep_fdb_flags(v) & VTEP_FDBF_STATIC) != 0;
    out->pvlan_class = vtep_fdb_class(v);
    out->target = vtep_fdb_target(v);
    out->last_seen = vtep_fdb_last_seen(v);
}

int vtep_fdb_add(vtep_engine_t *e, uint32_t seg, const vtep_fdb_entry_t *en)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s)
        return -ENOENT;
    if (vtep_eth_is_multicast(en->mac) || vtep_eth_is_zero(en->mac) || en->pvlan_class >= VTEP_CLASS_COUNT)
        return -EINVAL;
    uint8_t cls = en->pvlan_class;
    if (en->kind == VTEP_FDB_LOCAL) {
        /* A local MAC takes its port's role, whatever the caller said. */
        if (en->target >= e->p.max_ports || !e->ports[en->target].in_use
            || e->ports[en->target].segment != seg)
            return -EINVAL;
        cls = e->ports[en->target].pvlan_class;
    } else if (en->kind != VTEP_FDB_REMOTE || en->target >= e->n_remotes) {
        return -EINVAL;
    }
    uint8_t flags = (uint8_t)((en->kind == VTEP_FDB_REMOTE ? VTEP_FDBF_REMOTE : 0)
                              | (en->is_static ? VTEP_FDBF_STATIC : 0));
    uint64_t key = vtep_eth_key(en->mac);
    uint64_t val = vtep_fdb_pack(en->last_seen, en->target, flags, cls);
    int rc = 0;
    vtep_fdb_lock(&s->fdb);
    vtep_map_slot_t *slot = vtep_map_find(&s->fdb.map, key);
    if (slot)
        __atomic_store_n(&slot->val, val, __ATOMIC_RELAXED);
    else if (!vtep_map_insert(&s->fdb.map, key, val))
        rc = -ENOSPC;
    vtep_fdb_unlock(&s->fdb);
    return rc;
}

int vtep_fdb_del(vtep_engine_t *e, uint32_t seg, const uint8_t mac[6])
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s)
        return -ENOENT;
    int rc = -ENOENT;
    vtep_fdb_lock(&s->fdb);
    vtep_map_slot_t *slot = vtep_map_find(&s->fdb.map, vtep_eth_key(mac));
    if (slot) {
        vtep_fdb_delete_locked(&s->fdb, slot);
        rc = 0;
    }
    vtep_fdb_unlock(&s->fdb);
    return rc;
}

int vtep_fdb_get(vtep_engine_t *e, uint32_t seg, const uint8_t mac[6], uint32_t now, vtep_fdb_entry_t *out)
{
    struct vtep_segment *s = segment_get(e, seg);
    uint64_t v;
    if (!s || !vtep_fdb_lookup(&s->fdb, vtep_eth_key(mac), now, &v))
        return -ENOENT;
    entry_unpack(vtep_eth_key(mac), v, out);
    return 0;
}

static int is_learned(uint64_t val, uint64_t with_static)
{
    return with_static || !(vtep_fdb_flags(val) & VTEP_FDBF_STATIC);
}

int vtep_fdb_flush(vtep_engine_t *e, uint32_t seg, int with_static)
{
    struct vtep_segment *s = segment_get(e, seg);
    return s ? fdb_remove_if(s, is_learned, (uint64_t)with_static) : -ENOENT;
}

struct expiry { const vtep_fdb_t *fdb; uint32_t now; };

static int is_aged(uint64_t val, uint64_t arg)
{
    const struct expiry *x = (const struct expiry *)(uintptr_t)arg;
    return !vtep_fdb_is_live(x->fdb, val, x->now);
}

int vtep_fdb_expire(vtep_engine_t *e, uint32_t seg, uint32_t now)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s)
        return -ENOENT;
    struct expiry x = {&s->fdb, now};
    return fdb_remove_if(s, is_aged, (uint64_t)(uintptr_t)&x);
}

int vtep_fdb_count(vtep_engine_t *e, uint32_t seg)
{
    struct vtep_segment *s = segment_get(e, seg);
    return s ? (int)s->fdb.map.count : -ENOENT;
}

int vtep_fdb_dump(vtep_engine_t *e, uint32_t seg, uint64_t *cursor, vtep_fdb_entry_t *out, uint32_t max)
{
    struct vtep_segment *s = segment_get(e, seg);
    if (!s)
        return -ENOENT;
    /* Only the control thread deletes, and it is here: nothing shifts. */
    uint32_t n = 0;
    for (; *cursor <= s->fdb.map.mask && n < max; ++*cursor) {
        vtep_map_slot_t *slot = &s->fdb.map.slots[*cursor];
        uint64_t key = vtep_map_load(&slot->key);
        if (key)
            entry_unpack(key, vtep_map_load(&slot->val), &out[n++]);
    }
    return (int)n;
}

vtep_worker_t *vtep_worker_new(vtep_engine_t *e)
{
    vtep_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->blocks = calloc(e->n_blocks, sizeof *w->blocks);
    if (!w->blocks) {
        free(w);
        return NULL;
    }
    w->engine = e;
    pthread_mutex_init(&w->lock, NULL);
    w->wake_fd = -1;
    w->next = e->workers;
    e->workers = w;
    return w;
}

vtep_worker_t *vtep_worker_new_probe(vtep_engine_t *e)
{
    vtep_worker_t *w = vtep_worker_new(e);
    if (w)
        w->probe = 1;
    return w;
}

void vtep_worker_set_clock(vtep_worker_t *w, uint64_t now_ns)
{
    w->now_ns = now_ns;
}

void vtep_worker_free(vtep_worker_t *w)
{
    if (!w)
        return;
    vtep_worker_t **p = &w->engine->workers;
    while (*p != w)
        p = &(*p)->next;
    *p = w->next;
    pthread_mutex_destroy(&w->lock);
    free(w->blocks);
    free(w);
}

int vtep_counters_read(vtep_engine_t *e, int kind, uint32_t id, vtep_counters_t *out)
{
    uint32_t block;
    if (kind == VTEP_COUNTERS_PORT && id < e->p.max_ports)
        block = id;
    else if (kind == VTEP_COUNTERS_UNDERLAY)
        block = e->p.max_ports;
    else if (kind == VTEP_COUNTERS_SEGMENT && id < e->p.max_segments)
        block = e->p.max_ports + 1 + id;
    else
        return -ENOENT;
    memset(out, 0, sizeof *out);
    uint64_t *sum = (uint64_t *)out;
    for (vtep_worker_t *w = e->workers; w; w = w->next) {
        if (w->probe)
            continue;
        uint64_t *c = (uint64_t *)&w->blocks[block];
        for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
            sum[i] += VTEP_COUNTER_READ(c[i]);
    }
    return 0;
}
