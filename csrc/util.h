/* Byte order, unaligned access and compiler helpers shared by the fast path.
 *
 * Wire fields are stored big-endian.  A field that is big-endian on the wire
 * has type vtep_be16_t / vtep_be32_t so the reader knows to convert it.
 * Headers after a 14-byte Ethernet header are only 2-byte aligned, so 32-bit
 * wire fields are read and written through vtep_get_be32()/vtep_put_be32(),
 * which compile to a single (unaligned) load or store on x86-64. */
#ifndef VTEP_UTIL_H
#define VTEP_UTIL_H

#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>

typedef uint16_t vtep_be16_t; /* network byte order */
typedef uint32_t vtep_be32_t; /* network byte order */

#define VTEP_BUILD_ASSERT(cond, msg) _Static_assert(cond, msg)
/* Wire header structs: alignment 1, because a frame may start at any
 * address (the API takes any byte pointer; a binding may pack frames back
 * to back) and reading a member through a misaligned struct pointer is
 * undefined behaviour (UBSan reports it).  On x86-64 the loads are the same. */
#define VTEP_WIRE __attribute__((packed))
#define VTEP_INLINE static inline __attribute__((always_inline))
#define vtep_likely(x) __builtin_expect(!!(x), 1)
#define vtep_unlikely(x) __builtin_expect(!!(x), 0)
#define vtep_prefetch(p) __builtin_prefetch(p)

/* Host-order value of the 16-bit big-endian field at "p" (any alignment). */
VTEP_INLINE uint16_t vtep_get_be16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return ntohs(v);
}

/* Host-order value of the 32-bit big-endian field at "p" (any alignment). */
VTEP_INLINE uint32_t vtep_get_be32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return ntohl(v);
}

/* Store host-order "v" big-endian at "p" (any alignment). */
VTEP_INLINE void vtep_put_be16(void *p, uint16_t v)
{
    v = htons(v);
    memcpy(p, &v, sizeof v);
}

VTEP_INLINE void vtep_put_be32(void *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, sizeof v);
}

/* Counters are written by one worker and read by the control thread; relaxed
 * atomics keep the reads untorn and compile to plain loads and stores. */
#define VTEP_COUNTER_ADD(c, v) \
    __atomic_store_n(&(c), __atomic_load_n(&(c), __ATOMIC_RELAXED) + (v), __ATOMIC_RELAXED)
#define VTEP_COUNTER_READ(c) __atomic_load_n(&(c), __ATOMIC_RELAXED)

#endif
