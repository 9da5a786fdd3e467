"""RFC 2544 throughput (section 26.1): the highest offered rate at which the
device forwards every frame, found by searching on the rate; and, the same
way, the highest rate whose loss stays within a bound (0.5 %).  Pure logic:
"trial(rate)" does the measuring and returns what it saw.

A trial result is a dict with at least "offered" (frames/s the generator
really sent; it may fall short of the rate asked) and "loss" (lost/sent).

The search asks rates, not offered loads: it starts at a guess, walks up or
down by growing steps until it holds a passing and a failing rate, then
bisects until they are within "resolution" (relative) or "min_step" (frames/s)
of each other.  The rate it returns has then passed "confirm" trials in all:
a majority of "confirm" trials at the answer must pass (their median loss
passes; trials stop once the majority is decided), or the answer steps down.  Every trial is kept, in order, for the JSON."""
import statistics


def passes(loss, max_loss):
    """Zero loss means no frame lost at all; otherwise loss at most "max_loss"."""
    return loss <= 0 if max_loss <= 0 else loss <= max_loss


class Search:
    """One device/load combination: trials shared by every search on it, so
    the 0.5 %-loss search reuses what the zero-loss search measured."""

    def __init__(self, trial, ceiling, *, resolution=0.01, min_step=5000, confirm=3, max_trials=40):
        # "ceiling": the highest rate to ask (the generator's flat-out rate).
        self.trial = trial
        self.ceiling = float(ceiling)
        self.resolution = resolution
        self.min_step = min_step
        self.confirm = confirm
        self.max_trials = max_trials
        self.trials = []          # every trial result, in order, each with "rate" and "purpose"
        self._seen = {}           # rate asked -> [results]

    def run(self, rate, purpose):
        if len(self.trials) >= self.max_trials:
            raise RuntimeError(f"search: more than {self.max_trials} trials")
        result = dict(self.trial(rate))
        result.update(rate=rate, purpose=purpose)
        self.trials.append(result)
        self._seen.setdefault(rate, []).append(result)
        return result

    def record(self, rate, result):
        """A result measured outside the search (the flat-out trial), filed under "rate"."""
        result = dict(result)
        result.setdefault("rate", rate)
        self.trials.append(result)
        self._seen.setdefault(rate, []).append(result)

    def rates(self):
        """Every rate measured so far."""
        return list(self._seen)

    def first(self, rate, purpose):
        """The first result at "rate": measured now, or earlier by any search."""
        seen = self._seen.get(rate)
        return seen[0] if seen else self.run(rate, purpose)

    def close_enough(self, lo, hi, resolution=None):
        return hi - lo <= max((resolution or self.resolution) * hi, self.min_step)

    def find(self, max_loss=0.0, guess=None, lo=0.0, step=0.04, resolution=None, confirm=None, budget=None):
        """The highest passing rate, as {"rate", "offered", "loss", "repeats",
        "bound": "generator" | "device", "gap"}.  "lo" is a rate known to pass
        (0 passes trivially); "resolution" and "confirm" override the search's
        own for this answer; after "budget" trials the bisection stops where
        it is ("gap": how far apart the passing and failing rates were)."""
        start = len(self.trials)
        resolution = resolution or self.resolution
        confirm = confirm or self.confirm
        purpose = "zero-loss" if max_loss <= 0 else f"loss<={max_loss:g}"
        ok = lambda r: passes(r["loss"], max_loss)  # noqa: E731
        hi = None                                     # the lowest failing rate seen
        x = min(self.ceiling, guess or self.ceiling / 2)
        if x <= lo:
            x = min(self.ceiling, lo * (1 + step))
        while True:                                   # 1: bracket the answer
            if ok(self.first(x, purpose)):
                lo = x
                if x >= self.ceiling or hi is not None:
                    break
                x = min(self.ceiling, x * (1 + step))
            else:
                hi = x
                if lo > 0:
                    break
                x = x * (1 - step)
                if x < self.min_step:                 # nothing passes, even nearly idle
                    return self._answer(0.0, max_loss, purpose, "device")
            step = min(2 * step, 0.5)
        while hi is not None and not self.close_enough(lo, hi, resolution):   # 2: bisect
            if budget and len(self.trials) - start >= budget:
                break
            mid = (lo + hi) / 2
            if ok(self.first(mid, purpose)):
                lo = mid
            else:
                hi = mid
        # 3: confirm: the median of repeated trials at the answer must pass;
        # if it does not, step down, by steps that double (a noisy machine can
        # make single trials pass far above what holds up).
        gap = (hi - lo) / hi if hi else 0.0
        down = max(2 * resolution, self.min_step / lo) if lo > 0 else resolution
        while lo > 0:
            # Trials until the majority of "confirm" is decided: the median.
            results = list(self._seen.get(lo, []))
            need = confirm // 2 + 1
            while len(results) < confirm:
                good = sum(ok(r) for r in results)
                if good >= need or len(results) - good >= need:
                    break
                results.append(self.run(lo, purpose + " confirm"))
            if sum(ok(r) for r in results) >= need:
                break
            lo = lo * (1 - down)
            down = min(2 * down, 0.5)
            if lo < self.min_step:
                lo = 0.0
        return self._answer(lo, max_loss, purpose, "generator" if lo >= self.ceiling else "device", gap)

    def _answer(self, rate, max_loss, purpose, bound, gap=0.0):
        results = self._seen.get(rate, []) if rate > 0 else []
        return {"rate": rate, "purpose": purpose, "max_loss": max_loss, "bound": bound, "gap": round(gap, 4),
                "offered": statistics.median(r["offered"] for r in results) if results else 0.0,
                "loss": statistics.median(r["loss"] for r in results) if results else 0.0,
                "repeats": len(results)}


def throughput(trial, ceiling, guess=None, loss_bound=0.005, **kwargs):
    """The zero-loss rate and the "loss_bound" rate of one device, with the
    trials; "ceiling" is where the generator tops out."""
    s = Search(trial, ceiling, **kwargs)
    zero = s.find(0.0, guess=guess)
    # The 0.5 % search starts where zero loss stopped: that rate passes a fortiori.
    failing = sorted(r for r in s.rates() if r > zero["rate"])
    bounded = s.find(loss_bound, guess=failing[0] if failing else None, lo=zero["rate"])
    return {"zero_loss": zero, "bounded_loss": bounded, "trials": s.trials}


def percentile(values, p):
    """The "p"-th percentile (0..100) of "values", linear between ranks
    (numpy's default); None for no values."""
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(data) - 1)
    return data[f] + (data[c] - data[f]) * (k - f)


def ratio(a, b):
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or not b:
        return None
    return a / b
