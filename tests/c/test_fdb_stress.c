/* The FDB under concurrent use, as the engine uses it: reader threads look
 * up MACs that never change while a control thread inserts and deletes
 * others and a learner thread learns and moves more (try-lock writers).
 * Every lookup of a stable MAC must find it with its binding, and the table
 * must hold exactly the stable and learned MACs at the end.
 *
 * Limit: the seqlock guards readers against entries shifted by a delete.
 * That window needs a reader preempted mid-probe just as the entry it seeks
 * moves behind it; with this layout a build without the seqlock still
 * passes on a 2-core machine, so this test guards the concurrent paths
 * (learners, deletes, lookups) rather than proving the seqlock. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "fdb.h"

/* Keys are chosen so their home slots collide: one long cluster, in which
 * every insert and delete lands among the entries readers probe. */
enum { STABLE = 64, CHURN = 64, HOMES = 16, READERS = 3 };
static int rounds = 20000;  /* argv[1]: fewer under ThreadSanitizer, which is 30x slower */

static vtep_fdb_t fdb;
static int churning = 1, done;  /* stop flags: atomic loads and stores */
static uint64_t stable[STABLE], churn[CHURN], learned[CHURN];

static void pick_colliding_keys(void)
{
    uint64_t *lists[3] = {stable, churn, learned};
    uint32_t n = 0;
    for (uint64_t k = 0x020000000001ull; n < 3 * STABLE; k++)
        if (vtep_map_home(&fdb.map, k) < HOMES) {
            lists[n % 3][n / 3] = k;
            n++;
        }
}

static uint64_t binding_of(uint32_t i) { return vtep_fdb_binding(vtep_fdb_pack(0, (uint16_t)i, VTEP_FDBF_STATIC, 1)); }

struct tally { long lookups, errors; };

static void *reader(void *arg)
{
    struct tally *t = arg;
    uint64_t v;
    for (uint32_t n = 0; __atomic_load_n(&churning, __ATOMIC_RELAXED); n++, t->lookups++) {
        uint32_t i = (n * 2654435761u) % STABLE;
        if (!vtep_fdb_lookup(&fdb, stable[i], 0, &v) || vtep_fdb_binding(v) != binding_of(i))
            t->errors++;
    }
    return NULL;
}

static void *learner(void *arg)
{
    (void)arg;
    for (uint32_t now = 1; !__atomic_load_n(&done, __ATOMIC_RELAXED); now++)
        for (uint32_t i = 0; i < CHURN; i++)  /* learn, and move every second */
            vtep_fdb_learn(&fdb, learned[i], vtep_fdb_binding(vtep_fdb_pack(0, (uint16_t)(now & 1), 0, 1)), now);
    return NULL;
}

static void control_churn(void)
{
    for (int round = 0; round < rounds; round++) {
        for (uint32_t i = 0; i < CHURN; i++) {
            vtep_fdb_lock(&fdb);
            if (!vtep_map_find(&fdb.map, churn[i]))
                vtep_map_insert(&fdb.map, churn[i], vtep_fdb_pack(0, 7, VTEP_FDBF_STATIC, 1));
            vtep_fdb_unlock(&fdb);
        }
        for (uint32_t i = 0; i < CHURN; i++) {
            vtep_fdb_lock(&fdb);
            vtep_map_slot_t *s = vtep_map_find(&fdb.map, churn[i]);
            if (s)
                vtep_fdb_delete_locked(&fdb, s);
            vtep_fdb_unlock(&fdb);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (vtep_fdb_init(&fdb, STABLE + 2 * CHURN, 0) < 0)
        return 1;
    pick_colliding_keys();
    for (uint32_t i = 0; i < STABLE; i++)
        vtep_map_insert(&fdb.map, stable[i], vtep_fdb_pack(0, (uint16_t)i, VTEP_FDBF_STATIC, 1));

    pthread_t readers[READERS], learn;
    struct tally tally[READERS] = {{0, 0}};
    for (int t = 0; t < READERS; t++)
        pthread_create(&readers[t], NULL, reader, &tally[t]);
    pthread_create(&learn, NULL, learner, NULL);
    control_churn();
    __atomic_store_n(&churning, 0, __ATOMIC_RELAXED);
    for (int t = 0; t < READERS; t++)
        pthread_join(readers[t], NULL);
    __atomic_store_n(&done, 1, __ATOMIC_RELAXED);
    pthread_join(learn, NULL);

    long n_learned = 0;
    uint64_t v;
    for (uint32_t i = 0; i < CHURN; i++)
        n_learned += vtep_fdb_lookup(&fdb, learned[i], 0, &v);
    long errors = 0, lookups = 0;
    for (int t = 0; t < READERS; t++)
        errors += tally[t].errors, lookups += tally[t].lookups;
    int ok = errors == 0 && fdb.map.count == STABLE + n_learned;
    printf("fdb stress: %ld lookups during churn, %ld wrong; %u entries (%d stable + %ld learned): %s\n",
           lookups, errors, fdb.map.count, STABLE, n_learned, ok ? "ok" : "FAIL");
    vtep_fdb_free(&fdb);
    return ok ? 0 : 1;
}
