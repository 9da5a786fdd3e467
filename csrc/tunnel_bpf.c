/* eBPF programs for the underlay (see tunnel_bpf.h). */
#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "tunnel_bpf.h"

/* Newer than the system's headers may be: Linux 6.6's tcx hook. */
enum { ATTACH_TCX_INGRESS = 46, TCX_NEXT = -1, TCX_DROP = 2 };
#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LOAD(size, dst, src, at) INSN(BPF_LDX | BPF_MEM | (size), (dst), (src), (at), 0)
#define MOV_X(dst, src) INSN(BPF_ALU64 | BPF_MOV | BPF_X, (dst), (src), 0, 0)
#define MOV_K(dst, k) INSN(BPF_ALU64 | BPF_MOV | BPF_K, (dst), 0, 0, (k))
#define ADD_K(dst, k) INSN(BPF_ALU64 | BPF_ADD | BPF_K, (dst), 0, 0, (k))
#define ALU32_K(op, dst, k) INSN(BPF_ALU | (op) | BPF_K, (dst), 0, 0, (k))
#define CALL(fn) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, (fn))
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
/* Jumps go to labels, resolved by finish().  Compares are 32-bit
 * (JMP32): a 64-bit one would sign-extend the immediate. */
#define IF(op, reg, k, label) INSN(BPF_JMP32 | (op) | BPF_K, (reg), 0, -(label), (int32_t)(k))
#define GOTO(label) INSN(BPF_JMP | BPF_JA, 0, 0, -(label), 0)

enum { YES = 1, NO, OPTIONS, COMPARE, LABELS };

/* The headers are copied to the stack once, from frame byte 12 on, at
 * fp + BUF: there the IPv4 and IPv6 destination addresses (bytes 30 and 38)
 * are 4-byte aligned, as the verifier wants stack loads to be. */
enum { BUF = -62, PORT_BUF = -8 };
#define AT(frame_offset) (BUF + (frame_offset) - 12)

struct prog {
    struct bpf_insn insn[96];
    int n;
    int at[LABELS];
};

static void emit(struct prog *p, struct bpf_insn insn)
{
    p->insn[p->n++] = insn;
}

static void mark(struct prog *p, int label)
{
    p->at[label] = p->n;
}

/* Each program returns "yes" for a tunnel packet and "no" for the rest. */
static void finish(struct prog *p, int32_t yes, int32_t no)
{
    mark(p, NO);
    emit(p, MOV_K(0, no));
    emit(p, EXIT());
    mark(p, YES);
    emit(p, MOV_K(0, yes));
    emit(p, EXIT());
    for (int i = 0; i < p->n; i++) {
        uint8_t class = BPF_CLASS(p->insn[i].code);
        if ((class == BPF_JMP || class == BPF_JMP32) && BPF_OP(p->insn[i].code) != BPF_CALL
            && BPF_OP(p->insn[i].code) != BPF_EXIT)
            p->insn[i].off = (int16_t)(p->at[-p->insn[i].off] - (i + 1));
    }
}

/* What network-order bytes read as when loaded. */
static int32_t native16(uint16_t v)
{
    uint8_t b[2];
    uint16_t r;
    vtep_put_be16(b, v);
    memcpy(&r, b, 2);
    return r;
}

static int32_t native32(const uint8_t *bytes)
{
    uint32_t r;
    memcpy(&r, bytes, 4);
    return (int32_t)r;
}

/* r0 = 0 if "len" bytes of the packet from offset r2 are now at fp + "to". */
static void copy(struct prog *p, int to, int len)
{
    emit(p, MOV_X(1, 6));
    emit(p, MOV_X(3, 10));
    emit(p, ADD_K(3, to));
    emit(p, MOV_K(4, len));
    emit(p, CALL(BPF_FUNC_skb_load_bytes));
}

/* Untagged UDP to "port" or GRE, for "local".  With "for_socket", also
 * later IPv4 fragments and IPv6 extension headers for "local" (which the
 * pipeline counts); else no fragment at all (the stack reassembles them). */
static void program(struct prog *p, const vtep_addr_t *local, uint16_t port, int for_socket)
{
    int v4 = local->family == 4;
    emit(p, MOV_X(6, 1));                                      /* r6 = the context */
    emit(p, LOAD(BPF_W, 0, 6, offsetof(struct __sk_buff, vlan_present)));
    emit(p, IF(BPF_JNE, 0, 0, NO));
    emit(p, MOV_K(2, 12));
    copy(p, BUF, v4 ? 38 - 12 : 58 - 12);                     /* to the UDP port (IPv4 without options) */
    emit(p, INSN(BPF_JMP | BPF_JNE | BPF_K, 0, 0, -NO, 0));   /* shorter than that */
    emit(p, LOAD(BPF_H, 0, 10, AT(12)));
    if (v4) {
        emit(p, IF(BPF_JNE, 0, native16(0x0800), NO));
        emit(p, LOAD(BPF_W, 0, 10, AT(30)));
        emit(p, IF(BPF_JNE, 0, native32(local->bytes), NO));
        emit(p, LOAD(BPF_B, 0, 10, AT(23)));
        emit(p, IF(BPF_JEQ, 0, 47, YES));
        emit(p, IF(BPF_JNE, 0, 17, NO));
        emit(p, LOAD(BPF_H, 0, 10, AT(20)));
        emit(p, IF(BPF_JSET, 0, native16(for_socket ? 0x1fff : 0x3fff), for_socket ? YES : NO));
        emit(p, LOAD(BPF_B, 7, 10, AT(14)));
        emit(p, ALU32_K(BPF_AND, 7, 0xf));
        emit(p, IF(BPF_JNE, 7, 5, OPTIONS));
        emit(p, LOAD(BPF_H, 0, 10, AT(36)));
        emit(p, GOTO(COMPARE));
        mark(p, OPTIONS);                                      /* a second copy, of the port alone */
        emit(p, ALU32_K(BPF_LSH, 7, 2));
        emit(p, MOV_X(2, 7));
        emit(p, ADD_K(2, 14 + 2));
        copy(p, PORT_BUF, 2);
        emit(p, INSN(BPF_JMP | BPF_JNE | BPF_K, 0, 0, -NO, 0));
        emit(p, LOAD(BPF_H, 0, 10, PORT_BUF));
    } else {
        emit(p, IF(BPF_JNE, 0, native16(0x86dd), NO));
        for (int w = 0; w < 4; w++) {
            emit(p, LOAD(BPF_W, 0, 10, AT(38 + 4 * w)));
            emit(p, IF(BPF_JNE, 0, native32(local->bytes + 4 * w), NO));
        }
        emit(p, LOAD(BPF_B, 0, 10, AT(20)));
        emit(p, IF(BPF_JEQ, 0, 47, YES));
        if (for_socket) {
            static const int extension_headers[] = {0, 43, 44, 60};  /* hop-by-hop, routing, fragment, options */
            for (int i = 0; i < 4; i++)
                emit(p, IF(BPF_JEQ, 0, extension_headers[i], YES));
        }
        emit(p, IF(BPF_JNE, 0, 17, NO));
        emit(p, LOAD(BPF_H, 0, 10, AT(56)));
    }
    mark(p, COMPARE);
    emit(p, IF(BPF_JEQ, 0, native16(port), YES));
    emit(p, GOTO(NO));
}

static int bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

static int load(const vtep_addr_t *local, uint16_t port, int for_socket)
{
    struct prog p = {.n = 0};
    program(&p, local, port, for_socket);
    finish(&p, for_socket ? -1 : TCX_DROP, for_socket ? 0 : TCX_NEXT);  /* a socket: bytes to keep */
    union bpf_attr attr = {0};
    attr.prog_type = for_socket ? BPF_PROG_TYPE_SOCKET_FILTER : BPF_PROG_TYPE_SCHED_CLS;
    attr.insn_cnt = (uint32_t)p.n;
    attr.insns = (uint64_t)(uintptr_t)p.insn;
    attr.license = (uint64_t)(uintptr_t)"Apache-2.0";
    memcpy(attr.prog_name, "vtep_tunnel", sizeof "vtep_tunnel");
    int fd = bpf(BPF_PROG_LOAD, &attr);
    return fd >= 0 ? fd : -errno;
}

int vtep_tunnel_filter(int fd, const vtep_addr_t *local, uint16_t port)
{
    int prog_fd = load(local, port, 1);
    if (prog_fd < 0)
        return prog_fd;
    int rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &prog_fd, sizeof prog_fd) < 0 ? -errno : 0;
    close(prog_fd);  /* the socket holds the program */
    return rc;
}

int vtep_stack_bypass(int ifindex, const vtep_addr_t *local, uint16_t port)
{
    int prog_fd = load(local, port, 0);
    if (prog_fd < 0)
        return prog_fd;
    union bpf_attr link = {0};
    link.link_create.prog_fd = (uint32_t)prog_fd;
    link.link_create.target_ifindex = (uint32_t)ifindex;
    link.link_create.attach_type = ATTACH_TCX_INGRESS;
    int link_fd = bpf(BPF_LINK_CREATE, &link);
    int err = errno;
    close(prog_fd);  /* the link holds the program */
    return link_fd >= 0 ? link_fd : -err;
}
