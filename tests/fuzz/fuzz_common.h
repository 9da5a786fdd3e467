/* What the libFuzzer targets in tests/fuzz/ share: the engines under test,
 * a reader of the fuzzer's input, and the invariants every output of a burst
 * must keep, checked the same way by each target.
 *
 *   fuzz_access.c    access-port classify (virtio-net header, checksum flags)
 *   fuzz_underlay.c  underlay decap, flow hash and burst
 *   fuzz_pipeline.c  a sequence of bursts on one engine (learning, ageing)
 *   fuzz_offload.c   checksum completion and GSO segmentation
 *
 * A failed invariant aborts, which libFuzzer and the replay (replay.c)
 * report as a crash. */
#ifndef VTEP_FUZZ_COMMON_H
#define VTEP_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "offload.h"
#include "vtep.h"

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

enum {
    FUZZ_MAX_OUT = 64,
    FUZZ_ROLES = 4,           /* promiscuous, isolated, community 0, community 1 */
    FUZZ_SEGMENTS = 2,        /* VXLAN, NVGRE */
    FUZZ_MTU = 1500,
    FUZZ_VNI = 5000,          /* the role's VNI is FUZZ_VNI + role, in both segments */
    FUZZ_NOW_LIMIT = 1 << 20, /* clocks stay below this */
};

/* One engine: remote ...1 resolved, remote ...3 unresolved, both on the
 * list of each segment; a port of every role in each segment; static FDB
 * entries in each segment that make every unicast path reachable from a
 * fresh engine (the MACs make_corpus.py aims at):
 *   02:00:00:00:00:3r  local, on the port of role r
 *   02:00:00:00:00:02  remote ...1, role unknown
 *   02:00:00:00:00:1r  remote ...1, class r + 1 (role r)
 *   02:00:00:00:00:20  remote ...3 (unresolved) */
typedef struct fuzz_vtep {
    vtep_engine_t *e;
    vtep_worker_t *w;
    int family;
    int ports[FUZZ_SEGMENTS][FUZZ_ROLES];
    int remote_resolved, remote_unresolved;
    uint32_t segs[FUZZ_SEGMENTS];  /* segment ids: VXLAN, NVGRE */
} fuzz_vtep_t;

/* Build "v" for underlay "family" (4 or 6) with "max_fdb" entries per
 * segment; 0 or aborts. */
void fuzz_vtep_init(fuzz_vtep_t *v, int family, uint32_t max_fdb);
void fuzz_vtep_free(fuzz_vtep_t *v);
/* The PVLAN class of port "port" of "v". */
uint8_t fuzz_port_class(const fuzz_vtep_t *v, uint32_t port);
/* Check that every static entry is still there as fuzz_vtep_init made it. */
void fuzz_check_static(const fuzz_vtep_t *v, uint32_t now);

/* The fuzzer's input, read front to back; zeros once it is used up. */
typedef struct fuzz_input {
    const uint8_t *p;
    size_t left;
} fuzz_input_t;

uint8_t fuzz_u8(fuzz_input_t *in);
uint16_t fuzz_u16(fuzz_input_t *in);
uint32_t fuzz_u32(fuzz_input_t *in);
/* The next "*n" bytes (fewer if the input ends; "*n" is set to how many)
 * as a heap copy that ends where its allocation ends and starts at an odd
 * address: ASan sees any read past the end, UBSan any aligned access.
 * Freed with fuzz_free. */
uint8_t *fuzz_take(fuzz_input_t *in, size_t *n);
void fuzz_free(uint8_t *frame);

/* The invariants of the outputs of one burst of "n_pkts" frames on "v"
 * from access port "ingress" (UINT32_MAX: from the underlay): each lies
 * inside its frame; port outputs go to a port of the frame's segment that
 * the sender's class (the port's, or the VNI's) may reach, never back to
 * "ingress"; underlay outputs go only to the resolved remote, only for
 * frames from an access port, fit the MTU and decapsulate back to the frame
 * with the sender's VNI.  A frame is dropped exactly when it has no output. */
void fuzz_check_burst(const fuzz_vtep_t *v, uint32_t ingress, const vtep_pkt_t *pkts, uint32_t n_pkts,
                      const vtep_out_t *outs, int n_out, const uint8_t *verdicts);

/* Send output "o" of frame "p" as the worker loop does (loop.c send_out):
 * finish an unfinished checksum, cut a super-frame into segments.  Checks
 * each segment: inside its frame, no longer than the headers + gso_size,
 * within the MTU on the underlay, and with correct checksums. */
void fuzz_send(const vtep_out_t *o, vtep_pkt_t *p);

/* The segment checker vtep_gso_segment calls, for fuzz_offload.c too. */
struct fuzz_gso {
    const uint8_t *next;      /* where the next segment's payload must start */
    const uint8_t *end;       /* end of the super-frame */
    uint32_t h_len;           /* outer + inner headers of every segment */
    uint32_t outer_len;
    uint32_t gso_size;
    uint32_t max_ip_len;      /* outer IP packet limit (0: none) */
    int checksums;            /* verify the segment's checksums */
    uint32_t segments;
};
int fuzz_gso_emit(void *ctx, const uint8_t *h, uint32_t h_len, const uint8_t *payload, uint32_t n);

/* Whether the TCP/UDP checksum of Ethernet frame "f" is right (frames
 * vtep_l4_csum_fill does not handle count as right). */
int fuzz_l4_csum_ok(const uint8_t *f, uint32_t len);

#endif
