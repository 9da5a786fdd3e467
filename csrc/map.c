#include <errno.h>
#include "map.h"

int vtep_map_init(vtep_map_t *m, uint32_t limit)
{
    uint64_t cap = 16;
    unsigned bits = 4;
    while (cap < 2 * (uint64_t)limit) {
        cap <<= 1;
        bits++;
    }
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots)
        return -ENOMEM;
    m->mask = cap - 1;
    m->shift = 64 - bits;
    m->count = 0;
    m->limit = limit;
    return 0;
}

void vtep_map_free(vtep_map_t *m)
{
    free(m->slots);
    m->slots = NULL;
}

vtep_map_slot_t *vtep_map_insert(vtep_map_t *m, uint64_t key, uint64_t val)
{
    if (m->count >= m->limit)
        return NULL;
    uint64_t i = vtep_map_home(m, key);
    while (m->slots[i].key)
        i = (i + 1) & m->mask;
    __atomic_store_n(&m->slots[i].val, val, __ATOMIC_RELAXED);
    __atomic_store_n(&m->slots[i].key, key, __ATOMIC_RELEASE);
    m->count++;
    return &m->slots[i];
}

void vtep_map_delete(vtep_map_t *m, vtep_map_slot_t *slot)
{
    uint64_t hole = (uint64_t)(slot - m->slots);
    for (uint64_t i = (hole + 1) & m->mask;; i = (i + 1) & m->mask) {
        uint64_t k = m->slots[i].key;
        if (k == 0)
            break;
        /* Move the key at i into the hole unless its home lies cyclically
         * in (hole, i]: then the hole does not interrupt its probe path. */
        uint64_t home = vtep_map_home(m, k);
        if (((i - home) & m->mask) >= ((i - hole) & m->mask)) {
            __atomic_store_n(&m->slots[hole].val, m->slots[i].val, __ATOMIC_RELAXED);
            __atomic_store_n(&m->slots[hole].key, k, __ATOMIC_RELEASE);
            hole = i;
        }
    }
    __atomic_store_n(&m->slots[hole].key, 0, __ATOMIC_RELEASE);
    m->count--;
}
