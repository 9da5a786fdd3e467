# The engine half of csrc/vtep.h, mirrored for Cython (all nogil).  The
# stateless packet functions of vtep_packet.h are the cffi module's job.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "vtep.h" nogil:
    ctypedef enum vtep_encap_t:
        VTEP_ENCAP_VXLAN
        VTEP_ENCAP_NVGRE

    enum:
        VTEP_DROP_COUNT
        VTEP_HDR_ROOM
        VTEP_CLASS_UNKNOWN
        VTEP_CLASS_PROMISCUOUS
        VTEP_CLASS_ISOLATED
        VTEP_CLASS_COMMUNITY
        VTEP_MAX_COMMUNITIES
        VTEP_FDB_LOCAL
        VTEP_FDB_REMOTE
        VTEP_OUT_PORT
        VTEP_OUT_UNDERLAY
        VTEP_COUNTERS_PORT
        VTEP_COUNTERS_UNDERLAY
        VTEP_COUNTERS_SEGMENT

    uint32_t VTEP_VNI_NONE
    uint32_t VTEP_BUM_RATE_MAX

    ctypedef struct vtep_addr_t:
        uint8_t family
        uint8_t bytes[16]

    ctypedef struct vtep_engine_t:
        pass
    ctypedef struct vtep_worker_t:
        pass

    ctypedef struct vtep_engine_params_t:
        uint32_t max_ports
        uint32_t max_segments
        uint32_t max_remotes
        vtep_addr_t local
        uint8_t underlay_mac[6]
        uint16_t underlay_mtu
        uint16_t destination_port
        uint16_t port_min
        uint16_t port_max
        uint8_t ttl
        uint8_t udp_checksum

    ctypedef struct vtep_segment_params_t:
        vtep_encap_t encapsulation
        uint32_t vni
        uint32_t isolated_vni
        uint32_t n_communities
        uint32_t community_vni[64]
        uint8_t mac_learning
        uint32_t fdb_ageing_sec
        uint32_t maximum_fdb_entries

    ctypedef struct vtep_fdb_entry_t:
        uint8_t mac[6]
        uint8_t kind
        uint8_t is_static
        uint8_t pvlan_class
        uint16_t target
        uint32_t last_seen

    ctypedef struct vtep_pkt_t:
        const uint8_t *data
        uint32_t len
        uint32_t flags

    enum:
        VTEP_PKT_CSUM_OK
        VTEP_PKT_VLAN

    ctypedef struct vtep_out_t:
        const uint8_t *data
        uint16_t data_len
        uint16_t hdr_len
        uint16_t pkt
        uint8_t kind
        uint32_t target
        uint32_t segment
        uint8_t hdr[80]

    ctypedef struct vtep_counters_t:
        uint64_t rx_packets, rx_bytes
        uint64_t tx_packets, tx_bytes
        uint64_t learn_refused
        uint64_t forwarded
        uint64_t drops[VTEP_DROP_COUNT]

    vtep_engine_t *vtep_engine_new(const vtep_engine_params_t *p, int *err)
    void vtep_engine_free(vtep_engine_t *e)
    int vtep_engine_set_underlay(vtep_engine_t *e, const uint8_t *mac, uint16_t mtu)
    int vtep_segment_add(vtep_engine_t *e, const vtep_segment_params_t *p)
    int vtep_segment_del(vtep_engine_t *e, uint32_t seg)
    int vtep_segment_add_remote(vtep_engine_t *e, uint32_t seg, uint32_t remote)
    int vtep_segment_del_remote(vtep_engine_t *e, uint32_t seg, uint32_t remote)
    int vtep_remote_add(vtep_engine_t *e, const vtep_addr_t *addr)
    int vtep_remote_set_neighbour(vtep_engine_t *e, uint32_t remote, const uint8_t *mac)
    int vtep_port_add(vtep_engine_t *e, uint32_t seg, uint8_t pvlan_class)
    int vtep_port_del(vtep_engine_t *e, uint32_t port)
    int vtep_port_set_bum_limit(vtep_engine_t *e, uint32_t port, uint32_t rate, uint32_t burst)
    int vtep_fdb_add(vtep_engine_t *e, uint32_t seg, const vtep_fdb_entry_t *entry)
    int vtep_fdb_del(vtep_engine_t *e, uint32_t seg, const uint8_t *mac)
    int vtep_fdb_get(vtep_engine_t *e, uint32_t seg, const uint8_t *mac, uint32_t now, vtep_fdb_entry_t *out)
    int vtep_fdb_flush(vtep_engine_t *e, uint32_t seg, int with_static)
    int vtep_fdb_expire(vtep_engine_t *e, uint32_t seg, uint32_t now)
    int vtep_fdb_count(vtep_engine_t *e, uint32_t seg)
    int vtep_fdb_dump(vtep_engine_t *e, uint32_t seg, uint64_t *cursor, vtep_fdb_entry_t *out, uint32_t max)
    int vtep_pvlan_allows(uint8_t frm, uint8_t to)
    vtep_worker_t *vtep_worker_new(vtep_engine_t *e)
    void vtep_worker_free(vtep_worker_t *w)
    vtep_worker_t *vtep_worker_new_probe(vtep_engine_t *e)
    void vtep_worker_set_clock(vtep_worker_t *w, uint64_t now_ns)
    int vtep_access_burst(vtep_worker_t *w, uint32_t port, const vtep_pkt_t *pkts, uint32_t n,
                          uint32_t now, vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts)
    int vtep_underlay_burst(vtep_worker_t *w, const vtep_pkt_t *pkts, uint32_t n, uint32_t now,
                            vtep_out_t *outs, uint32_t max_out, uint8_t *verdicts)
    int vtep_counters_read(vtep_engine_t *e, int kind, uint32_t id, vtep_counters_t *out)
    void vtep_engine_pause(vtep_engine_t *e)
    void vtep_engine_resume(vtep_engine_t *e)

    ctypedef struct vtep_io_t:
        pass
    ctypedef struct vtep_afpacket_params_t:
        const char *ifname
        uint32_t frame_size
        uint32_t frames
        uint16_t fanout_group
        uint8_t promiscuous
        uint8_t tunnel_only
        vtep_addr_t local
        uint16_t destination_port
        uint8_t offload
    vtep_io_t *vtep_io_afpacket_open(const vtep_afpacket_params_t *p, int *err)
    vtep_io_t *vtep_io_tap_open(const char *ifname, int multiqueue, uint32_t frame_size, int *err)
    void vtep_io_close(vtep_io_t *io)

    ctypedef struct vtep_loop_t:
        pass
    vtep_loop_t *vtep_loop_new(vtep_engine_t *e, uint32_t burst, int *err)
    void vtep_loop_free(vtep_loop_t *l)
    int vtep_loop_attach_port(vtep_loop_t *l, uint32_t port, vtep_io_t *io)
    int vtep_loop_detach_port(vtep_loop_t *l, uint32_t port)
    int vtep_loop_attach_underlay(vtep_loop_t *l, vtep_io_t *io)
    int vtep_loop_start(vtep_loop_t *l)
    void vtep_loop_stop(vtep_loop_t *l)


cdef extern from "tunnel_bpf.h" nogil:
    int vtep_stack_bypass(int ifindex, const vtep_addr_t *local, uint16_t port)
