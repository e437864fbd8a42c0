"""`engagement fit`: replay a file, summarise each customer's orders (SPEC §11) and fit the
BG/NBD and Gamma-Gamma models by maximum likelihood (docs/CLV.md).

scipy (optimisation, log-gamma) and numpy are used here only, never by the engine or the worker:
the prediction (`engine.clv.predict`) is pure Python.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

from stream_app.engine import DEFAULT_CONFIG, EngineConfig, Unit
from stream_app.engine.clock import DAY, format_instant
from stream_app.engine.clv import ClvModel, Summary, summarize
from stream_app.engine.events import CUSTOMER_ERASED, ORDER_PLACED, Event
from stream_app.engine.unit import APPLIED
from stream_app.lines import READ_ERRORS, InputError, iter_lines, open_events, read_error
from stream_app.replay import Replay, parse_as_of

#: §11: fewer customers with a repeat purchase day than this is an error
MIN_REPEAT_CUSTOMERS = 50
#: bounds of every log-parameter: e^-30 .. e^40 (a fit at the boundary, a -> 0 or b -> 1e12 and
#: beyond, stops at a bound instead of running off to overflow)
LOG_BOUNDS = (-30.0, 40.0)


class FitError(InputError):
    """A fit that cannot be made (too few customers); the CLI exits 2 with its message."""


# -- summaries from a replay --------------------------------------------------------------------


class _RecordingUnit:
    """Stands in for the replay's Unit in `Replay.feed`: passes every event on and keeps, for the
    events the unit applied, each customer's order days (day -> placed amount), dropping a customer
    at its applied erasure: exactly the events the engine applied, after validation, dedupe and
    erasure, since those decisions are the unit's own."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.days: dict[str, dict[int, float]] = {}

    def offer(self, ev: Event) -> str:
        outcome = self.unit.offer(ev)
        if outcome == APPLIED and ev.customer_id is not None:
            if ev.type == ORDER_PLACED:
                d = self.days.get(ev.customer_id)
                if d is None:
                    d = self.days[ev.customer_id] = {}
                day = ev.occurred_at // DAY
                d[day] = d.get(day, 0.0) + ev.amount
            elif ev.type == CUSTOMER_ERASED:
                self.days.pop(ev.customer_id, None)
        return outcome


def order_days(numbered: Iterable[tuple[int, bytes]], as_of: int | None = None,
               config: EngineConfig = DEFAULT_CONFIG) -> tuple[dict[str, dict[int, float]], int | None]:
    """Replay numbered lines (§8, as `engagement replay` does) and return every customer's order
    days at the end (customer -> UTC day -> sum of its applied `order_placed` amounts that day)
    and the instant they are read at: `as_of`, or the final watermark (None: nothing applied)."""
    r = Replay(config)
    rec = _RecordingUnit(r.unit)
    r.unit = rec  # type: ignore[assignment]  # feed() only calls offer()
    try:
        r.feed(numbered)
    finally:
        r.unit = rec.unit
    wm = rec.unit.watermark
    if as_of is not None and wm is not None and as_of < wm:
        raise InputError(f"--as-of {format_instant(as_of)} is before the file's final watermark {format_instant(wm)}")
    return rec.days, (wm if as_of is None else as_of)


def summaries(days: dict[str, dict[int, float]], as_of: int) -> dict[str, Summary]:
    """§11 summary of every customer with an order, at instant `as_of`, by customer id."""
    as_of_day = as_of // DAY
    return {cid: summarize(d, as_of_day) for cid, d in sorted(days.items()) if d}


def summaries_from_file(path: str, as_of: str | None = None,
                        config: EngineConfig = DEFAULT_CONFIG) -> tuple[dict[str, Summary], int | None]:
    """Replay an events file and summarise its customers at `as_of` (RFC 3339; default the final
    watermark). Raises InputError (ReplayError) for an unreadable file or a bad `as_of`."""
    as_of_us = parse_as_of(as_of) if as_of is not None else None
    stream = open_events(path)
    last = [0]

    def numbered() -> Iterable[tuple[int, bytes]]:
        for n, raw in iter_lines(stream):
            last[0] = n
            yield n, raw

    try:
        days, at = order_days(numbered(), as_of_us, config)
    except READ_ERRORS as exc:
        raise read_error(path, exc, last[0]) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if at is None:
        return {}, None
    return summaries(days, at), at


# -- likelihoods --------------------------------------------------------------------------------


class BgnbdData(NamedTuple):
    """Distinct (x, t_x, age) with their counts (customers sharing a summary share a likelihood)."""

    x: np.ndarray
    t_x: np.ndarray
    age: np.ndarray
    n: np.ndarray


class GammaGammaData(NamedTuple):
    x: np.ndarray
    m: np.ndarray


def bgnbd_data(rows: Iterable[Summary]) -> BgnbdData:
    keys = np.array([(s.x, s.t_x, s.age) for s in rows], dtype=np.float64).reshape(-1, 3)
    uniq, counts = np.unique(keys, axis=0, return_counts=True)
    return BgnbdData(uniq[:, 0], uniq[:, 1], uniq[:, 2], counts.astype(np.float64))


def gamma_gamma_data(rows: Iterable[Summary]) -> GammaGammaData:
    pairs = [(s.x, s.m) for s in rows if s.x >= 1 and s.m > 0]
    arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    return GammaGammaData(arr[:, 0], arr[:, 1])


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, data: BgnbdData) -> float:
    """Σ log L_i of §11's BG/NBD likelihood. B(a, b+x)/B(a, b) is Π_{j<x} (b+j)/(a+b+j), summed as
    logs (no difference of two lnΓ near 1e13 when b is huge), and the second term is the first
    times a/(b+x−1)·((α+age)/(α+t_x))^(r+x) (B(a+1, b+x−1) = B(a, b+x)·a/(b+x−1))."""
    x, t_x, age, n = data
    xmax = int(x.max()) if len(x) else 0
    xi = x.astype(np.int64)
    # Σ_{j<x} log((b+j)/(a+b+j)) = Σ log1p(−a/(a+b+j)) and lnΓ(r+x) − lnΓ(r) = Σ_{j<x} log(r+j), as
    # cumulative sums indexed by x: exact when r or b is huge (a difference of two lnΓ is not)
    j = np.arange(xmax, dtype=np.float64)
    log_beta_ratio = np.concatenate(([0.0], np.cumsum(np.log1p(-a / (a + b + j)))))[xi]
    log_gamma_ratio = np.concatenate(([0.0], np.cumsum(np.log(r + j))))[xi]
    rx = r + x
    # r·ln α − (r+x)·ln(α+age) = −r·log1p(age/α) − x·ln(α+age)
    head = log_gamma_ratio - r * np.log1p(age / alpha) - x * np.log(alpha + age) + log_beta_ratio
    with np.errstate(divide="ignore"):
        odds = np.where(x >= 1, math.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300))
                        + rx * np.log1p((age - t_x) / (alpha + t_x)), -np.inf)
    ll = head + np.logaddexp(0.0, odds)
    return float(np.dot(n, ll))


def gamma_gamma_log_likelihood(p: float, q: float, v: float, data: GammaGammaData) -> float:
    """Σ log L_i of §11's Gamma-Gamma likelihood over customers with x ≥ 1 and m > 0."""
    x, m = data
    px = p * x
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * math.log(v) + (px - 1.0) * np.log(m)
          + px * np.log(x) - (px + q) * np.log(v + x * m))
    return float(ll.sum())


# -- maximisation -------------------------------------------------------------------------------


class Optimum(NamedTuple):
    params: tuple[float, ...]
    log_likelihood: float
    #: the parameters (by name) that ended at a bound of their log range: a boundary fit
    at_bound: tuple[str, ...]


def maximise(f: Callable[..., float], names: Sequence[str], starts: Sequence[Sequence[float]],
             progress: Callable[[str], None] | None = None) -> Optimum:
    """Maximise `f(*params)` over positive parameters, in log space within LOG_BOUNDS, from each
    start (L-BFGS-B), then polish the best with Nelder-Mead and L-BFGS-B again."""

    def neg(theta: np.ndarray) -> float:
        theta = np.clip(theta, *LOG_BOUNDS)
        try:
            v = f(*np.exp(theta))
        except (FloatingPointError, ValueError, OverflowError):
            return 1e300
        return -v if math.isfinite(v) else 1e300

    bounds = [LOG_BOUNDS] * len(names)
    best: tuple[float, np.ndarray] | None = None
    for i, start in enumerate(starts):
        theta0 = np.log(np.asarray(start, dtype=np.float64))
        with np.errstate(all="ignore"):
            res = minimize(neg, theta0, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-8})
        if progress is not None:
            progress(f"  start {i + 1}/{len(starts)}: log-likelihood {-res.fun:.4f}")
        if best is None or res.fun < best[0]:
            best = (float(res.fun), res.x)
    assert best is not None
    theta = best[1]
    for _ in range(2):  # a simplex step copes with the flat ridges near the boundary
        with np.errstate(all="ignore"):
            nm = minimize(neg, theta, method="Nelder-Mead",
                          options={"maxiter": 4000, "xatol": 1e-9, "fatol": 1e-10, "adaptive": True})
            lb = minimize(neg, np.clip(nm.x, *LOG_BOUNDS), method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9})
        for cand in (nm, lb):
            if cand.fun < best[0]:
                best = (float(cand.fun), np.clip(cand.x, *LOG_BOUNDS))
        theta = best[1]
    params = tuple(float(v) for v in np.exp(best[1]))
    lo, hi = LOG_BOUNDS
    at_bound = tuple(n for n, t in zip(names, best[1], strict=True) if t <= lo + 0.5 or t >= hi - 0.5)
    return Optimum(params, -best[0], at_bound)


def bgnbd_starts(data: BgnbdData) -> list[tuple[float, float, float, float]]:
    """Several starting points: (r, α) from the mean purchase rate, (a, b) from quick dropout to
    none at all."""
    mean_rate = float(np.dot(data.n, data.x) / max(float(np.dot(data.n, data.age)), 1.0))
    alpha = 1.0 / max(mean_rate, 1e-6)
    return [(1.0, alpha, 0.5, 2.0), (0.5, alpha / 2.0, 1.5, 5.0), (2.0, 2.0 * alpha, 0.05, 1.0),
            (1.0, alpha, 0.01, 100.0), (1.0, alpha, 1e-3, 1e6), (0.2, 10.0, 3.0, 0.5)]


def gamma_gamma_starts(data: GammaGammaData) -> list[tuple[float, float, float]]:
    mean = float(data.m.mean()) if len(data.m) else 1.0
    return [(1.0, 2.0, mean), (5.0, 5.0, mean), (0.5, 10.0, 10.0 * mean), (10.0, 1.5, 0.05 * mean),
            (2.0, 100.0, 50.0 * mean)]


class FitResult(NamedTuple):
    model: ClvModel
    bgnbd: Optimum
    gamma_gamma: Optimum
    customers: int
    repeat_customers: int
    gamma_gamma_customers: int
    seconds: float


def parameter_hash(params: Sequence[float]) -> str:
    """The default version: 12 hex digits of SHA-256 over the parameters' shortest round-trip text."""
    return hashlib.sha256(",".join(repr(float(p)) for p in params).encode()).hexdigest()[:12]


def fit(rows: Sequence[Summary], version: str | None = None, fitted_at: str | None = None,
        progress: Callable[[str], None] | None = None) -> FitResult:
    """Fit both models to the summaries (§11). Raises FitError with fewer than
    MIN_REPEAT_CUSTOMERS customers with x ≥ 1 (or with m > 0, for Gamma-Gamma)."""
    t0 = time.monotonic()
    repeat = sum(1 for s in rows if s.x >= 1)
    if repeat < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"{repeat} customer(s) with a repeat purchase day (x >= 1) among {len(rows)} with an "
                       f"order; a fit needs at least {MIN_REPEAT_CUSTOMERS}")
    gg = gamma_gamma_data(rows)
    if len(gg.x) < MIN_REPEAT_CUSTOMERS:
        raise FitError(f"{len(gg.x)} customer(s) with x >= 1 and a mean repeat-day value m > 0; the "
                       f"Gamma-Gamma fit needs at least {MIN_REPEAT_CUSTOMERS}")
    data = bgnbd_data(rows)
    if progress is not None:
        progress(f"BG/NBD over {len(rows):,} customers ({len(data.x):,} distinct summaries)")
    bg = maximise(lambda r, al, a, b: bgnbd_log_likelihood(r, al, a, b, data), ("r", "alpha", "a", "b"),
                  bgnbd_starts(data), progress)
    if progress is not None:
        progress(f"Gamma-Gamma over {len(gg.x):,} customers")
    gm = maximise(lambda p, q, v: gamma_gamma_log_likelihood(p, q, v, gg), ("p", "q", "v"),
                  gamma_gamma_starts(gg), progress)
    r, alpha, a, b = bg.params
    p, q, v = gm.params
    if a == 1.0:  # §11 refuses a = 1 (not reachable in practice: a measure-zero point)
        a = math.nextafter(1.0, 2.0)
    if not q > 1.0:
        raise FitError(f"the Gamma-Gamma fit has q = {q:.6g} <= 1: the mean order value is not defined "
                       "(heavy-tailed order values); the model cannot be used")
    if version is None:
        version = parameter_hash((r, alpha, a, b, p, q, v))
    if fitted_at is None:
        fitted_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    model = ClvModel(version, fitted_at, r, alpha, a, b, p, q, v)
    return FitResult(model, bg, gm, len(rows), repeat, len(gg.x), time.monotonic() - t0)


def fit_document(result: FitResult, source: str, as_of: int) -> dict[str, Any]:
    """The model file's `fit` object: where the model came from (never read by the scorer)."""
    return {
        "source": source,
        "as_of": format_instant(as_of),
        "customers": result.customers,
        "repeat_customers": result.repeat_customers,
        "gamma_gamma_customers": result.gamma_gamma_customers,
        "bgnbd_log_likelihood": result.bgnbd.log_likelihood,
        "gamma_gamma_log_likelihood": result.gamma_gamma.log_likelihood,
        "at_bound": [f"bgnbd.{n}" for n in result.bgnbd.at_bound]
        + [f"gamma_gamma.{n}" for n in result.gamma_gamma.at_bound],
        "seconds": round(result.seconds, 3),
    }


def print_report(result: FitResult, out: TextIO) -> None:
    m = result.model
    print(f"model {m.version} fitted at {m.fitted_at} in {result.seconds:.1f}s", file=out)
    print(f"BG/NBD       {result.customers:,} customers ({result.repeat_customers:,} with x >= 1): "
          f"r={m.r:.6g} alpha={m.alpha:.6g} a={m.a:.6g} b={m.b:.6g}  "
          f"log-likelihood {result.bgnbd.log_likelihood:.4f}", file=out)
    print(f"Gamma-Gamma  {result.gamma_gamma_customers:,} customers: p={m.p:.6g} q={m.q:.6g} v={m.v:.6g}  "
          f"log-likelihood {result.gamma_gamma.log_likelihood:.4f}", file=out)
    bound = fit_document(result, "", 0)["at_bound"]
    if bound:
        print(f"warning: at the edge of the parameter range: {', '.join(bound)} (a boundary fit: "
              "see docs/CLV.md, When not to trust a fit)", file=out)
