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
VTEP_INLINE uint8_t vtep_fdb_binding_class(uint64_t b) { return (uint8_t)(b >> 24); }

/* What learning a source MAC decided (vtep_fdb_learn, vtep_fdb_claim). */
enum {
    VTEP_LEARN_OK = 0,       /* learned, refreshed, already there, or left to a later frame */
    VTEP_LEARN_REFUSED = 1,  /* not learned (table full, or a static entry of the same role
                              * holds the MAC elsewhere); the frame goes on */
    VTEP_LEARN_FOREIGN = 2,  /* a live entry gives the MAC another role: not learned, and the
                              * frame is dropped (foreign_src_mac) */
};

/* The MAC-move policy for a live entry "v" and a frame that shows the MAC
 * at binding "b".  A MAC has one role in a segment: a frame that claims it
 * for another role (another class; an entry of unknown class claims none)
 * is a forgery or a host that changed role, and is refused until the old
 * entry ages out or is deleted.  Within the same role a learned entry moves
 * (a VM migrates); a static one never does. */
VTEP_INLINE int vtep_fdb_judge(uint64_t v, uint64_t b)
{
    uint8_t held = vtep_fdb_class(v);
    if (held != VTEP_CLASS_UNKNOWN && held != vtep_fdb_binding_class(b))
        return VTEP_LEARN_FOREIGN;
    if ((vtep_fdb_flags(v) & VTEP_FDBF_STATIC) && !vtep_fdb_same_place(v, b))
        return VTEP_LEARN_REFUSED;
    return VTEP_LEARN_OK;
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

/* What vtep_fdb_learn would decide, without writing: for frames that must
 * not learn (a probe worker's, or from a VTEP no table knows). */
VTEP_INLINE int vtep_fdb_claim(const vtep_fdb_t *f, uint64_t key, uint64_t binding, uint32_t now)
{
    uint64_t v;
    return vtep_fdb_lookup(f, key, now, &v) ? vtep_fdb_judge(v, binding) : VTEP_LEARN_OK;
}

/* Worker: bind "key" to "binding" (vtep_fdb_pack without the time) as seen
 * at "now", under the MAC-move policy (vtep_fdb_judge).  Returns a
 * VTEP_LEARN_* verdict; VTEP_LEARN_OK also when the lock was busy. */
int vtep_fdb_learn(vtep_fdb_t *f, uint64_t key, uint64_t binding, uint32_t now);

/* Control thread. */
void vtep_fdb_lock(vtep_fdb_t *f);
void vtep_fdb_unlock(vtep_fdb_t *f);
/* With the lock held: delete the entry in "slot" so that readers stay right. */
void vtep_fdb_delete_locked(vtep_fdb_t *f, vtep_map_slot_t *slot);

#endif
