#include <errno.h>
#include "fdb.h"

int vtep_fdb_init(vtep_fdb_t *f, uint32_t limit, uint32_t ageing)
{
    f->seq = 0;
    f->lock = 0;
    f->ageing = ageing;
    return vtep_map_init(&f->map, limit);
}

void vtep_fdb_free(vtep_fdb_t *f)
{
    vtep_map_free(&f->map);
}

void vtep_fdb_lock(vtep_fdb_t *f)
{
    while (__atomic_test_and_set(&f->lock, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}

void vtep_fdb_unlock(vtep_fdb_t *f)
{
    __atomic_clear(&f->lock, __ATOMIC_RELEASE);
}

void vtep_fdb_delete_locked(vtep_fdb_t *f, vtep_map_slot_t *slot)
{
    __atomic_store_n(&f->seq, f->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    vtep_map_delete(&f->map, slot);
    __atomic_store_n(&f->seq, f->seq + 1, __ATOMIC_RELEASE);
}

int vtep_fdb_learn(vtep_fdb_t *f, uint64_t key, uint64_t binding, uint32_t now)
{
    /* Lock-free first look: most frames come from MACs already known,
     * bound where they are, and seen this second. */
    uint64_t v;
    if (vtep_fdb_lookup(f, key, now, &v)) {
        if (vtep_fdb_binding(v) == binding && vtep_fdb_last_seen(v) == now)
            return VTEP_LEARN_OK;
        int verdict = vtep_fdb_judge(v, binding);
        if (verdict != VTEP_LEARN_OK || (vtep_fdb_flags(v) & VTEP_FDBF_STATIC))
            return verdict;  /* refused, or a static entry already in place */
    }
    if (__atomic_test_and_set(&f->lock, __ATOMIC_ACQUIRE))
        return VTEP_LEARN_OK;  /* someone else is writing: learn from a later frame */
    int verdict = VTEP_LEARN_OK;
    uint64_t fresh = binding << 32 | now;
    vtep_map_slot_t *s = vtep_map_find(&f->map, key);
    if (s) {
        /* Judged again: the entry may have changed since the first look.
         * An aged learned entry is reused whatever it held. */
        uint64_t cur = s->val;
        if (!vtep_fdb_is_live(f, cur, now))
            __atomic_store_n(&s->val, fresh, __ATOMIC_RELAXED);
        else if ((verdict = vtep_fdb_judge(cur, binding)) == VTEP_LEARN_OK
                 && !(vtep_fdb_flags(cur) & VTEP_FDBF_STATIC))
            __atomic_store_n(&s->val, fresh, __ATOMIC_RELAXED);  /* refresh, or move within the role */
    } else if (!vtep_map_insert(&f->map, key, fresh)) {
        verdict = VTEP_LEARN_REFUSED;
    }
    vtep_fdb_unlock(f);
    return verdict;
}
