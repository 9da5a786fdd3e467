"""vtepd gives up its privileges once set up (docs/vtepd.md, "Security").

After start-up vtepd still creates TAPs, opens AF_PACKET sockets, brings
links up and asks the kernel to resolve neighbours (a reload, a next hop):
CAP_NET_ADMIN and CAP_NET_RAW.  drop() keeps those two and nothing else:

- PR_SET_NO_NEW_PRIVS: no execve() can grant a privilege again;
- the bounding set shrinks to the two (PR_CAPBSET_DROP, which needs
  CAP_SETPCAP, so it comes first): even an execve() as uid 0 gets no more;
- the ambient and inheritable sets are emptied;
- capset(2): effective = permitted = the two.

Capabilities belong to a thread, not to the process, and a new thread
copies its creator's.  So drop() must run in the main thread before any
other thread exists (the C workers, the metrics server); it says so when
it finds other threads.

The uid stays 0: the config file and the control socket's directory are
root's, and a uid 0 without capabilities still owns root's files (and only
has the access their modes give their owner).

ctypes on libc only: no new dependency and no C in the fast path."""
import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field

CAP_SETPCAP = 8
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW)
NAMES = {CAP_SETPCAP: "CAP_SETPCAP", CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522  # two 32-bit words per set


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def name(cap):
    return NAMES.get(cap, f"capability {cap}")


def mask(caps):
    """The bit mask of capability numbers "caps" (as /proc/PID/status shows them, CapEff etc.)."""
    return sum(1 << c for c in caps)


@dataclass
class Outcome:
    """What drop() did: "kept" the capabilities still effective, "problems"
    what it could not do (empty when the process is as asked)."""
    kept: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def __str__(self):
        kept = ", ".join(name(c) for c in self.kept) or "no capability"
        return f"kept {kept}" + "".join(f"; {p}" for p in self.problems)


def drop(keep=KEEP):
    """Make the calling thread keep only the capabilities "keep" (numbers),
    as the module doc says.  Never raises for a refusal: what could not be
    done is in the Outcome's problems (vtepd not started as root, or
    without CAP_SETPCAP, carries on with what it has)."""
    outcome = Outcome()
    others = len(os.listdir("/proc/self/task")) - 1
    if others:
        outcome.problems.append(f"{others} other thread(s) started before the drop keep their capabilities")
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) < 0:
        outcome.problems.append(f"cannot set no_new_privs: {_strerror()}")
    refused, error = _shrink_bounding_set(set(keep))
    if refused:
        outcome.problems.append(f"the bounding set keeps {refused} other capabilities "
                                f"(dropping them needs CAP_SETPCAP): {error}")
    if _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) < 0:
        outcome.problems.append(f"cannot clear the ambient set: {_strerror()}")
    held = _permitted()
    wanted = [c for c in keep if held >> c & 1]
    missing = [c for c in keep if not held >> c & 1]
    if missing:
        outcome.problems.append(f"never had {', '.join(name(c) for c in missing)}")
    try:
        _capset(mask(wanted))
        outcome.kept = wanted
    except OSError as e:
        outcome.problems.append(f"cannot drop capabilities: {e.strerror}")
        outcome.kept = [c for c in range(_last_cap() + 1) if held >> c & 1]
    return outcome


def _shrink_bounding_set(keep):
    """Drop every capability but "keep" from the bounding set; (how many it
    could not drop, the last error)."""
    refused, error = 0, None
    for cap in range(_last_cap() + 1):
        if cap in keep or _prctl(PR_CAPBSET_READ, cap) != 1:
            continue
        if _prctl(PR_CAPBSET_DROP, cap) < 0:
            refused, error = refused + 1, _strerror()
    return refused, error


def _last_cap():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _prctl(option, arg2=0):
    return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0))


def _strerror():
    return os.strerror(ctypes.get_errno())


def _permitted():
    """The calling thread's permitted set, as a mask."""
    header, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    if _libc.capget(ctypes.byref(header), data) < 0:
        raise OSError(ctypes.get_errno(), _strerror())
    return data[0].permitted | data[1].permitted << 32


def _capset(bits):
    """Effective = permitted = "bits", inheritable empty, for the calling thread."""
    header, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for i, word in enumerate((bits & 0xFFFFFFFF, bits >> 32)):
        data[i].effective = data[i].permitted = word
    if _libc.capset(ctypes.byref(header), data) < 0:
        raise OSError(ctypes.get_errno(), _strerror())
