"""What a run measures.  The full cross product of systems, directions,
frame sizes, flows, FDB sizes, PVLAN and workers would take hours on two
cores, so the default plan varies one dimension at a time around a base
point (256 flows, FDB 100, PVLAN off, 1 worker):

    frame size   64 .. 1518 and IMIX   every system, both directions
    flows        1, 256, 65,536        every system but OVS (for time), both directions, 64 bytes
    FDB          100 vs 1,000,000      vtepd, both directions, 64 bytes, 65,536 flows
    PVLAN        off vs on             vtepd, both directions, 64 bytes
    workers      1 vs 2                vtepd and nullfwd, both directions, 64 bytes

The FDB pair uses 65,536 flows, each frame to another destination MAC, so
the big table is looked up all over (FDB 100 at 65,536 flows is the flows
dimension's point, shared).  --quick keeps 64 bytes and the base point.

The machine is shared and its speed drifts over a run by more than the
margins the targets ask about, so the points the throughput targets compare
are measured again in further rounds (target_points); a target's figure is
the median of its per-round ratios."""
from dataclasses import dataclass, field

SYSTEMS = ("nullfwd", "vtepd", "kernel", "ovs")
DIRECTIONS = ("encap", "decap")
BASE_FLOWS = 256
BASE_FDB = 100
BIG_FDB = 1_000_000
FLOWS = (1, 256, 65536)
DIMENSIONS = ("size", "flows", "fdb", "pvlan", "workers")
ROUNDS = 5                 # the target points, measured this many times in all (--rounds)


@dataclass(frozen=True)
class Setup:
    """One start of a device: what stays fixed while its points are measured."""
    system: str
    workers: int = 1
    fdb: int = BASE_FDB        # vtepd only
    pvlan: bool = False        # vtepd only

    @property
    def base(self):
        return self.workers == 1 and self.fdb == BASE_FDB and not self.pvlan

    def label(self):
        parts = [self.system]
        if self.workers != 1:
            parts.append(f"{self.workers} workers")
        if self.system == "vtepd" and self.fdb != BASE_FDB:
            parts.append(f"FDB {self.fdb:,}")
        if self.pvlan:
            parts.append("PVLAN")
        return ", ".join(parts)

    def as_dict(self):
        return {"system": self.system, "workers": self.workers, "fdb": self.fdb, "pvlan": self.pvlan}


@dataclass(frozen=True)
class Point:
    setup: Setup
    direction: str
    size: object           # an int (bytes with FCS) or "imix"
    flows: int
    dimensions: tuple = field(default=(), compare=False)
    round: int = 0         # 0: the main plan; then the repeated rounds of the target points

    def key(self):
        return (self.setup, self.direction, self.size, self.flows)

    def as_dict(self):
        return dict(self.setup.as_dict(), direction=self.direction, size=self.size, flows=self.flows,
                    dimensions=list(self.dimensions), round=self.round)


def make(systems=SYSTEMS, directions=DIRECTIONS, sizes=None, dimensions=DIMENSIONS, quick=False):
    """The points, grouped by setup in the order of "systems" (one start each)."""
    from .frames import SIZES
    sizes = [64] if quick else list(sizes or SIZES)
    if quick:
        dimensions = ("size",)
    points = {}

    def add(point, dimension):
        old = points.get(point.key())
        dims = (old.dimensions if old else ()) + (dimension,)
        points[point.key()] = Point(point.setup, point.direction, point.size, point.flows, dims)

    for system in systems:
        base = Setup(system)
        for d in directions:
            if "size" in dimensions:
                for size in sizes:
                    add(Point(base, d, size, BASE_FLOWS), "size")
            if "flows" in dimensions and system != "ovs":
                for flows in FLOWS:
                    add(Point(base, d, 64, flows), "flows")
            if system == "vtepd" and "fdb" in dimensions:
                add(Point(base, d, 64, max(FLOWS)), "fdb")
                add(Point(Setup(system, fdb=BIG_FDB), d, 64, max(FLOWS)), "fdb")
            if system == "vtepd" and "pvlan" in dimensions:
                add(Point(base, d, 64, BASE_FLOWS), "pvlan")
                add(Point(Setup(system, pvlan=True), d, 64, BASE_FLOWS), "pvlan")
            if system in ("vtepd", "nullfwd") and "workers" in dimensions:
                add(Point(base, d, 64, BASE_FLOWS), "workers")
                add(Point(Setup(system, workers=2), d, 64, BASE_FLOWS), "workers")
    order = {s: i for i, s in enumerate(systems)}
    return sorted(points.values(), key=lambda p: (order[p.setup.system], not p.setup.base,
                                                  p.setup.workers, p.setup.fdb, p.setup.pvlan))


def by_setup(points):
    """[(setup, [points])] in plan order."""
    groups = {}
    for p in points:
        groups.setdefault(p.setup, []).append(p)
    return list(groups.items())


def target_points(systems, directions, round_no):
    """Round "round_no" of the points the throughput targets compare: 64
    bytes for the null forwarder, vtepd and the kernel at the base point, and
    vtepd's FDB pair.  Not OVS: its start is slow and vtepd's margin over it
    is wide.  Odd rounds take the setups backwards, so a drift of the
    machine's speed over the run weighs on both sides of each ratio alike."""
    points = []
    for system in (s for s in ("nullfwd", "vtepd", "kernel") if s in systems):
        for d in directions:
            points.append(Point(Setup(system), d, 64, BASE_FLOWS, round=round_no))
            if system == "vtepd":
                points.append(Point(Setup(system), d, 64, max(FLOWS), round=round_no))
                points.append(Point(Setup(system, fdb=BIG_FDB), d, 64, max(FLOWS), round=round_no))
    setups = by_setup(points)
    if round_no % 2:
        setups.reverse()
    return [p for _, group in setups for p in group]
