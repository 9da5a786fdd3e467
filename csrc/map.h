/* An open-addressing hash map from nonzero 64-bit keys to 64-bit values:
 * linear probing, capacity a power of two at least twice the maximum count,
 * and backward-shift deletion (no tombstones, so lookups stay O(1) however
 * many deletes have happened).
 *
 * Keys and values are read and written with relaxed atomics so that lock-free
 * readers see each word whole.  A reader may still see a key move during a
 * backward shift: users that delete while others read (the FDB) wrap deletes
 * in a seqlock.  Inserts store the value before publishing the key. */
#ifndef VTEP_MAP_H
#define VTEP_MAP_H

#include <stdint.h>
#include <stdlib.h>
#include "util.h"

typedef struct vtep_map_slot {
    uint64_t key;  /* 0 = empty */
    uint64_t val;
} vtep_map_slot_t;

typedef struct vtep_map {
    vtep_map_slot_t *slots;
    uint64_t mask;      /* capacity - 1 */
    unsigned shift;     /* 64 - log2(capacity) */
    uint32_t count;
    uint32_t limit;     /* most keys it may hold */
} vtep_map_t;

/* Allocate room for "limit" keys.  Returns 0 or -ENOMEM.  Control thread. */
int vtep_map_init(vtep_map_t *m, uint32_t limit);
void vtep_map_free(vtep_map_t *m);

VTEP_INLINE uint64_t vtep_map_home(const vtep_map_t *m, uint64_t key)
{
    return (key * 0x9e3779b97f4a7c15ull) >> m->shift;  /* Fibonacci hashing */
}

VTEP_INLINE uint64_t vtep_map_load(const uint64_t *w)
{
    return __atomic_load_n(w, __ATOMIC_RELAXED);
}

/* The slot holding "key", or NULL.  Key 0 marks an empty slot, so it is
 * never held: callers look up keys from the wire (the MAC 00:00:00:00:00:00
 * is key 0), and matching it would hand them an empty slot as an entry. */
VTEP_INLINE vtep_map_slot_t *vtep_map_find(const vtep_map_t *m, uint64_t key)
{
    if (vtep_unlikely(key == 0))
        return NULL;
    for (uint64_t i = vtep_map_home(m, key);; i = (i + 1) & m->mask) {
        uint64_t k = __atomic_load_n(&m->slots[i].key, __ATOMIC_ACQUIRE);
        if (k == key)
            return &m->slots[i];
        if (k == 0)
            return NULL;
    }
}

VTEP_INLINE void vtep_map_prefetch(const vtep_map_t *m, uint64_t key)
{
    vtep_prefetch(&m->slots[vtep_map_home(m, key)]);
}

/* Insert "key" (absent, nonzero) with "val".  Returns the slot, or NULL when
 * the map holds "limit" keys already.  Writers are serialized by the caller. */
vtep_map_slot_t *vtep_map_insert(vtep_map_t *m, uint64_t key, uint64_t val);

/* Remove the key in "slot", shifting later keys of its cluster back. */
void vtep_map_delete(vtep_map_t *m, vtep_map_slot_t *slot);

#endif
