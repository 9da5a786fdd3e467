/* The C tests' checks, with no framework: CHECK() and CHECK_EQ() print
 * file:line and what failed, count it, and go on; check_summary() prints
 * the count and gives main() its exit status (1 if anything failed). */
#ifndef VTEP_TESTS_CHECK_H
#define VTEP_TESTS_CHECK_H

#include <stdio.h>

static int failures;
static int checks;

#define CHECK(cond)                                                          \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

/* Integer equality, printing both values on failure. */
#define CHECK_EQ(got, want)                                                        \
    do {                                                                           \
        long long got_ = (long long)(got), want_ = (long long)(want);              \
        checks++;                                                                  \
        if (got_ != want_) {                                                       \
            failures++;                                                            \
            fprintf(stderr, "%s:%d: %s == %lld (0x%llx), expected %s == %lld (0x%llx)\n", \
                    __FILE__, __LINE__, #got, got_, (unsigned long long)got_, #want, \
                    want_, (unsigned long long)want_);                             \
        }                                                                          \
    } while (0)

static int check_summary(const char *name)
{
    if (failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, failures, checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, checks);
    return 0;
}

#endif
