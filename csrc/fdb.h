/* The MAC table of one segment.
 *
 * A vtep_map from MAC (host-order 48-bit key) to a packed entry.  Readers
 * (workers forwarding frames) take no lock.  Writers are serialized by a
 * spinlock: the control thread spins for it, a worker learning a MAC only
 * tries it and skips learning that frame if it is busy, so a worker never
 * waits.  Only the control thread deletes (del, flush, expire, port removal);
 * a delete may shift entries, so it bumps "seq" and readers that saw it move
 * retry.  Inserts and updates are single atomic stores and need no retry. */
#ifndef VTEP_FDB_H
#define VTEP_FDB_H

#include "map.h"
#include "vtep.h"

/* Packed entry: last_seen(32) | target(16) << 32 | flags(8) << 48 | class(8) << 56 */
enum { VTEP_FDBF_REMOTE = 1, VTEP_FDBF_STATIC = 2 };

VTEP_INLINE uint64_t vtep_fdb_pack(uint32_t last_seen, uint16_t target, uint8_t flags, uint8_t cls)
{
    return last_seen | (uint64_t)target << 32 | (uint64_t)flags << 48 | (uint64_t)cls << 56;
}
VTEP_INLINE uint32_t vtep_fdb_last_seen(uint64_t v) { return (uint32_t)v; }
VTEP_INLINE uint16_t vtep_fdb_target(uint64_t v) { return (uint16_t)(v >> 32); }
VTEP_INLINE uint8_t vtep_fdb_flags(uint64_t v) { return (uint8_t)(v >> 48); }
VTEP_INLINE uint8_t vtep_fdb_class(uint64_t v) { return (uint8_t)(v >> 56); }
/* Everything but the timestamp: what a learned MAC is bound to. */
VTEP_INLINE uint64_t vtep_fdb_binding(uint64_t v) { return v >> 32; }
/* Whether entry "v" and binding "b" put the MAC in the same place (the same
 * port, or the same remote), whatever their flags and roles. */
VTEP_INLINE int vtep_fdb_same_place(uint64_t v, uint64_t b)
{
    return (vtep_fdb_binding(v) & 0x1ffff) == (b & 0x1ffff);  /* target and VTEP_FDBF_REMOTE */
}

typedef struct vtep_fdb {
    vtep_map_t map;
    uint32_t seq;       /* odd while a delete is shifting entries */
    uint8_t lock;       /* held by the one writer */
    uint32_t ageing;    /* seconds; 0 = learned entries never age */
} vtep_fdb_t;

VTEP_INLINE int vtep_fdb_is_live(const vtep_fdb_t *f, uint64_t v, uint32_t now)
{
    return (vtep_fdb_flags(v) & VTEP_FDBF_STATIC) || f->ageing == 0
        || now - vtep_fdb_last_seen(v) <= f->ageing;
}

/* Look "key" up; on a live entry store it in "*val" and return 1, else 0. */
VTEP_INLINE int vtep_fdb_lookup(const vtep_fdb_t *f, uint64_t key, uint32_t now, uint64_t *val)
{
    for (;;) {
        uint32_t seq = __atomic_load_n(&f->seq, __ATOMIC_ACQUIRE);
        if (vtep_unlikely(seq & 1)) {
            __builtin_ia32_pause();
            continue;
        }
        vtep_map_slot_t *s = vtep_map_find(&f->map, key);
        uint64_t v = s ? vtep_map_load(&s->val) : 0;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (vtep_likely(__atomic_load_n(&f->seq, __ATOMIC_RELAXED) == seq)) {
            *val = v;
            return s && vtep_fdb_is_live(f, v, now);
        }
    }
}

int vtep_fdb_init(vtep_fdb_t *f, uint32_t limit, uint32_t ageing);
void vtep_fdb_free(vtep_fdb_t *f);

/* Worker: bind "key" to "binding" (vtep_fdb_pack without the time) as seen
 * at "now".  Returns 1 if the MAC could not be learned (table full, or a
 * static entry holds it elsewhere), else 0 (also when the lock was busy). */
int vtep_fdb_learn(vtep_fdb_t *f, uint64_t key, uint64_t binding, uint32_t now);

/* Control thread. */
void vtep_fdb_lock(vtep_fdb_t *f);
void vtep_fdb_unlock(vtep_fdb_t *f);
/* With the lock held: delete the entry in "slot" so that readers stay right. */
void vtep_fdb_delete_locked(vtep_fdb_t *f, vtep_map_slot_t *slot);

#endif
