/* vtep: the engine API, the only header the bindings see (with vtep_packet.h,
 * which it includes).
 *
 * An engine holds the tables: segments (each one PVLAN domain with its VNIs
 * and MAC table), access ports, and remote VTEPs.  Workers run bursts of
 * frames through it and count what happens in their own counters.
 *
 * Threads: table functions are called by the control thread only.  While
 * workers run bursts, the control thread may change the FDB (it is a seqlock:
 * workers never wait, see fdb.h) and read counters.  Segments, ports and
 * remotes change only while every worker is paused between two bursts: each
 * function that changes them pauses the workers itself (vtep_engine_pause),
 * so a change never meets a burst half-way and no frame is lost (frames wait
 * in their rings for the few microseconds it takes).  All functions return 0
 * (or an id >= 0) on success and a negative errno on failure, as each
 * comment says. */
#ifndef VTEP_H
#define VTEP_H

#include "vtep_packet.h"

/* PVLAN class of a port, of a VNI's senders, or of a remote MAC: one byte.
 * Community c (0-based, in the order the segment lists them) is class
 * VTEP_CLASS_COMMUNITY + c.  UNKNOWN is only for remote MACs whose role no
 * one told us: the receiving VTEP decides for them. */
enum {
    VTEP_CLASS_UNKNOWN = 0,
    VTEP_CLASS_PROMISCUOUS = 1,
    VTEP_CLASS_ISOLATED = 2,
    VTEP_CLASS_COMMUNITY = 3,
    VTEP_MAX_COMMUNITIES = 64,
    VTEP_CLASS_COUNT = VTEP_CLASS_COMMUNITY + VTEP_MAX_COMMUNITIES,
};

#define VTEP_VNI_NONE 0xffffffffu

typedef struct vtep_engine vtep_engine_t;
typedef struct vtep_worker vtep_worker_t;

typedef struct vtep_engine_params {
    uint32_t max_ports;       /* ids 0 .. max_ports-1; at most 65535 */
    uint32_t max_segments;
    uint32_t max_remotes;     /* at most 65535 */
    vtep_addr_t local;        /* this VTEP's underlay address */
    uint8_t underlay_mac[6];
    uint16_t underlay_mtu;    /* outer IP packets never exceed it */
    uint16_t destination_port;
    uint16_t port_min;        /* VXLAN UDP source port range */
    uint16_t port_max;
    uint8_t ttl;
    uint8_t udp_checksum;     /* IPv4 underlay: compute UDP checksums */
} vtep_engine_params_t;

typedef struct vtep_segment_params {
    vtep_encap_t encapsulation;
    uint32_t vni;                                  /* primary: promiscuous senders */
    uint32_t isolated_vni;                         /* or VTEP_VNI_NONE */
    uint32_t n_communities;
    uint32_t community_vni[VTEP_MAX_COMMUNITIES];
    uint8_t mac_learning;
    uint32_t fdb_ageing_sec;                       /* 0: learned entries never age */
    uint32_t maximum_fdb_entries;                  /* at least 1 */
} vtep_segment_params_t;

enum { VTEP_FDB_LOCAL = 0, VTEP_FDB_REMOTE = 1 };

typedef struct vtep_fdb_entry {
    uint8_t mac[6];
    uint8_t kind;             /* VTEP_FDB_LOCAL (target: port) or VTEP_FDB_REMOTE (target: remote) */
    uint8_t is_static;        /* never ages, never moves */
    uint8_t pvlan_class;      /* of the MAC's port; for remotes VTEP_CLASS_UNKNOWN if not known */
    uint16_t target;
    uint32_t last_seen;       /* seconds, the clock the bursts are given */
} vtep_fdb_entry_t;

/* One input frame.  A GSO super-frame (gso_size > 0, from an access port
 * with offloads) goes through the pipeline as one frame; its outputs are
 * cut into segments as they are sent (offload.h). */
typedef struct vtep_pkt {
    const uint8_t *data;
    uint32_t len;
    uint32_t flags;           /* VTEP_PKT_* (vtep_packet.h) */
    uint16_t gso_size;        /* payload bytes per segment; 0: a plain frame */
    uint16_t gso_hdr_len;     /* its headers, Ethernet to TCP/UDP */
    uint8_t gso_type;         /* VTEP_GSO_* */
} vtep_pkt_t;

enum { VTEP_OUT_PORT = 0, VTEP_OUT_UNDERLAY = 1 };

/* One output: "hdr_len" bytes of "hdr" (outer headers, possibly none) then
 * "data_len" bytes at "data", which points into the input frame: payloads
 * are never copied, a flooded frame is N descriptors of one buffer. */
typedef struct vtep_out {
    const uint8_t *data;
    uint16_t data_len;
    uint16_t hdr_len;
    uint16_t pkt;             /* index of the input frame in the burst */
    uint8_t kind;             /* VTEP_OUT_PORT or VTEP_OUT_UNDERLAY */
    uint8_t pad;
    uint32_t target;          /* port id or remote id */
    uint32_t segment;         /* whose counters the copy was counted on */
    uint8_t hdr[VTEP_HDR_ROOM];
} vtep_out_t;

typedef struct vtep_counters {
    uint64_t rx_packets, rx_bytes;
    uint64_t tx_packets, tx_bytes;
    uint64_t learn_refused;   /* MACs not learned, frame forwarded: table full, or a
                               * static entry of the same role holds it elsewhere */
    uint64_t forwarded;       /* frames received here of which at least one copy was
                               * handed to a link; the rest count at least one drop.
                               * Counted by the worker loops (loop.c), where frames
                               * are sent: a bare burst sends nothing */
    uint64_t drops[VTEP_DROP_COUNT];
} vtep_counters_t;

enum { VTEP_COUNTERS_PORT = 0, VTEP_COUNTERS_UNDERLAY = 1, VTEP_COUNTERS_SEGMENT = 2 };

/* Engine.  NULL with *err = -EINVAL (bad params) or -ENOMEM. */
vtep_engine_t *vtep_engine_new(const vtep_engine_params_t *p, int *err);
void vtep_engine_free(vtep_engine_t *e);
/* Underlay link facts, from the kernel.  0 or -EINVAL. */
int vtep_engine_set_underlay(vtep_engine_t *e, const uint8_t mac[6], uint16_t mtu);

/* Segments.  Returns the id, or -EINVAL (bad params), -EEXIST (a VNI is
 * taken), -ENOSPC (no id left) or -ENOMEM. */
int vtep_segment_add(vtep_engine_t *e, const vtep_segment_params_t *p);
/* 0, -ENOENT, or -EBUSY while ports use it. */
int vtep_segment_del(vtep_engine_t *e, uint32_t seg);
/* Put remote "remote" on the segment's head-end replication list, which is
 * also the list of VTEPs it accepts traffic from (any, while empty).
 * 0, -ENOENT, or -EEXIST. */
int vtep_segment_add_remote(vtep_engine_t *e, uint32_t seg, uint32_t remote);

/* Take "remote" off the segment's list.  0 or -ENOENT. */
int vtep_segment_del_remote(vtep_engine_t *e, uint32_t seg, uint32_t remote);

/* Remote VTEPs.  Returns the id (the existing one for a known address) or
 * -EINVAL (family differs from local), -ENOSPC. */
int vtep_remote_add(vtep_engine_t *e, const vtep_addr_t *addr);
/* Next hop MAC of the remote; NULL marks it unresolved (its traffic is
 * dropped as no_neighbour).  0 or -ENOENT. */
int vtep_remote_set_neighbour(vtep_engine_t *e, uint32_t remote, const uint8_t *mac);

/* Access ports.  Returns the id or -ENOENT (segment), -EINVAL (class the
 * segment has no VNI for), -ENOSPC. */
int vtep_port_add(vtep_engine_t *e, uint32_t seg, uint8_t pvlan_class);
/* Removes the port and its FDB entries.  0 or -ENOENT. */
int vtep_port_del(vtep_engine_t *e, uint32_t port);
/* BUM rate limit of access port "port": of the broadcast, unknown unicast
 * and multicast frames entering from it, at most "rate" per second pass,
 * with bursts of up to "burst" at once (0: a tenth of a second's worth, at
 * least 1); the rest are dropped as bum_rate_limit.  Rate 0 removes the
 * limit.  A new limit starts with a full burst.  0, -ENOENT, or -EINVAL
 * (rate above VTEP_BUM_RATE_MAX, where the ns clock's rounding would
 * exceed 0.5%). */
#define VTEP_BUM_RATE_MAX 10000000u
int vtep_port_set_bum_limit(vtep_engine_t *e, uint32_t port, uint32_t rate, uint32_t burst);

/* FDB of segment "seg".  add: 0, -ENOENT, -EINVAL (zero or multicast MAC, bad
 * target), -ENOSPC (segment full); replaces an entry for the same MAC.
 * del: 0 or -ENOENT.  get: 0 (a live entry) or -ENOENT.  flush: number of
 * entries removed (learned ones only unless "with_static").  expire: number
 * of aged entries removed.  count: entries held (aged ones until expired).
 * dump: copies up to "max" entries from slot "*cursor" on, advances it, and
 * returns how many it copied (0 at the end). */
int vtep_fdb_add(vtep_engine_t *e, uint32_t seg, const vtep_fdb_entry_t *entry);
int vtep_fdb_del(vtep_engine_t *e, uint32_t seg, const uint8_t mac[6]);
int vtep_fdb_get(vtep_engine_t *e, uint32_t seg, const uint8_t mac[6], uint32_t now,
                 vtep_fdb_entry_t *out);
int vtep_fdb_flush(vtep_engine_t *e, uint32_t seg, int with_static);
int vtep_fdb_expire(vtep_engine_t *e, uint32_t seg, uint32_t now);
int vtep_fdb_count(vtep_engine_t *e, uint32_t seg);
int vtep_fdb_dump(vtep_engine_t *e, uint32_t seg, uint64_t *cursor, vtep_fdb_entry_t *out,
                  uint32_t max);

/* Whether PVLAN lets a sender of class "from" reach a receiver of class "to". */
int vtep_pvlan_allows(uint8_t from, uint8_t to);

/* Workers: one per thread, each with its own counters.  NULL on -ENOMEM. */
vtep_worker_t *vtep_worker_new(vtep_engine_t *e);
void vtep_worker_free(vtep_worker_t *w);
/* A worker for "what would happen" questions (vtepctl trace): its bursts
 * learn no MAC, take no rate-limit token, and its counters are summed by
 * no one.  NULL on -ENOMEM. */
vtep_worker_t *vtep_worker_new_probe(vtep_engine_t *e);
/* The time "w"'s next bursts see for rate limits, in nanoseconds of a
 * monotonic clock (the worker loops set it once per pass; it starts at 0).
 * The "now" of a burst stays in seconds: the FDB's clock. */
void vtep_worker_set_clock(vtep_worker_t *w, uint64_t now_ns);

/* Run "n" frames received on access port "port" (or, for the underlay burst,
 * on the underlay) through the pipeline at time "now" (seconds).  Writes
 * outputs to "outs" (room "max_out") and, for each frame, its verdict:
 * VTEP_DROP_NONE if at least one copy went out, else why it was dropped.
 * Returns the number of outputs, or -EINVAL ("n" above 65535). */
int vtep_access_burst(vtep_worker_t *w, uint32_t port, const vtep_pkt_t *pkts, uint32_t n,
                      uint32_t now, vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts);
int vtep_underlay_burst(vtep_worker_t *w, const vtep_pkt_t *pkts, uint32_t n, uint32_t now,
                        vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts);

/* Hold every worker between two bursts until the matching resume, so that
 * several table changes take effect together (a port and its I/O, say).
 * Nests.  Called by the control thread only. */
void vtep_engine_pause(vtep_engine_t *e);
void vtep_engine_resume(vtep_engine_t *e);

/* Sum of all workers' counters for one port, the underlay, or one segment
 * ("kind" VTEP_COUNTERS_*).  0 or -ENOENT. */
int vtep_counters_read(vtep_engine_t *e, int kind, uint32_t id, vtep_counters_t *out);

/* Packet I/O (io_afpacket.c, io_tap.c).  One handle per worker and
 * interface; several workers share an interface through a PACKET_FANOUT
 * group or TAP queues. */
typedef struct vtep_io vtep_io_t;

typedef struct vtep_afpacket_params {
    const char *ifname;
    uint32_t frame_size;      /* ring slot; at least the link MTU + 18 + 64; 0: 2048 */
    uint32_t frames;          /* slots per ring (RX and TX each); 0: 4096 RX, 1024 TX */
    uint16_t fanout_group;    /* 0: none; else join this PACKET_FANOUT_HASH group */
    uint8_t promiscuous;      /* access ports: take every frame on the link */
    uint8_t tunnel_only;      /* underlay: a filter keeps only tunnel traffic for
                               * "local" (the kernel gets it too: see tunnel_bpf.h) */
    vtep_addr_t local;
    uint16_t destination_port;
    uint8_t offload;          /* PACKET_VNET_HDR: access ports take frames with checksums
                               * to finish and as GSO super-frames, which vtep finishes;
                               * the underlay takes and sends UDP super-packets (offload.h) */
} vtep_afpacket_params_t;

/* AF_PACKET with mmap'ed RX and TX rings on an existing link, bypassing the
 * qdisc and never seeing its own transmissions.  NULL with *err: -ENODEV (no
 * such link), -EPERM, -EINVAL, -ENOMEM, or another socket error. */
vtep_io_t *vtep_io_afpacket_open(const vtep_afpacket_params_t *p, int *err);
/* A queue of TAP "ifname" (IFF_TAP | IFF_NO_PI, IFF_MULTI_QUEUE if
 * "multiqueue"), created if it does not exist; it lives while a queue is
 * open.  Frames up to "frame_size" bytes (0: 2048).  NULL with *err. */
vtep_io_t *vtep_io_tap_open(const char *ifname, int multiqueue, uint32_t frame_size, int *err);
void vtep_io_close(vtep_io_t *io);

/* Worker loops (loop.c): a C thread with its own worker and I/O handles,
 * polling its ports and the underlay and running their bursts.  The control
 * thread attaches and detaches handles (a loop owns what it is given) and
 * starts and stops the thread.  A loop's I/O drops are counted in its
 * worker's counters: ring_full (a TX ring had no room, or the kernel dropped
 * frames because our RX ring was full), mtu (a frame larger than a ring slot),
 * no_port (an output port has no handle on this loop). */
typedef struct vtep_loop vtep_loop_t;

/* "burst": frames per RX burst (1..256; 0: 64).  NULL with *err. */
vtep_loop_t *vtep_loop_new(vtep_engine_t *e, uint32_t burst, int *err);
/* Stops the thread and closes every handle. */
void vtep_loop_free(vtep_loop_t *l);
/* 0, -EINVAL (bad port id), -EEXIST (the port has a handle). */
int vtep_loop_attach_port(vtep_loop_t *l, uint32_t port, vtep_io_t *io);
/* Closes the port's handle.  0 or -ENOENT. */
int vtep_loop_detach_port(vtep_loop_t *l, uint32_t port);
/* 0 or -EEXIST. */
int vtep_loop_attach_underlay(vtep_loop_t *l, vtep_io_t *io);
/* 0, -EALREADY, or a pthread error. */
int vtep_loop_start(vtep_loop_t *l);
/* Returns once the thread has left; no-op if it is not running. */
void vtep_loop_stop(vtep_loop_t *l);

#endif
