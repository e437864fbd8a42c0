"""SPEC §11 predicted lifetime value: the model file, and the exact per-customer prediction.

Pure (stdlib `math` only, no I/O but `load_model`): written so that it can move into the compiled
engine unchanged. `fit.py` fits the models; docs/CLV.md explains them and how the numbers here are
computed and checked.

**The expected orders.** §11's bracket `1 − k·₂F₁(r+x, b+x; c; z)`, with `c = a+b+x−1`,
`k = (1−z)^(r+x)` and `z = H/(α+age+H)`, cancels catastrophically near the boundary the real fits
reach (b ~ 1e12: `k·₂F₁ = 1 − O(1/b)`), so an accurate ₂F₁ alone is not enough: a ₂F₁ right to
1e-16 still leaves the bracket wrong from the fifth digit. Pfaff's transformation turns the product
into one hypergeometric function, `k·₂F₁(r+x, b+x; c; z) = ₂F₁(r+x, a−1; c; w)` with
`w = z/(z−1) = −H/(α+age)`, whose series minus its first term is the bracket itself; dividing by
`a−1` term by term (`(a−1)_n/(a−1) = (a)_(n−1)`) leaves

    c/(a−1)·[1 − k·₂F₁] = Σ_{n≥1} (−1)^(n+1) (r+x)_n (a)_(n−1) / ((c+1)_(n−1) n!) · u^n,  u = H/(α+age)

(`expected_series`): no cancellation between 1 and a nearly equal number, no division by `a−1`, no
pole at `c = 0`. Its terms fall like `u^n·(n/c)^...`, fast whenever `u < 1` or `c` is large; where
they do not (`u ≥ 1` and a moderate `c`), the bracket is computed from the ₂F₁ power series in `z`
(`hyp2f1`, all terms positive) and cancels only mildly there.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, NamedTuple

from stream_app.engine.clock import parse_rfc3339

MODEL_NAME: Final = "bgnbd-gamma-gamma"
MAX_VERSION_CHARS: Final = 64
#: top-level keys a model file may carry: the §11 ones, and `fit` (free-form provenance written by
#: `engagement fit`: log-likelihoods, customers, source file; never read by the scorer)
_TOP_KEYS: Final = ("model", "version", "fitted_at", "bgnbd", "gamma_gamma", "fit")
_BGNBD_KEYS: Final = ("r", "alpha", "a", "b")
_GG_KEYS: Final = ("p", "q", "v")

#: a series stops when its next term is below this share of the sum
_EPS: Final = 1e-17
#: the most terms a series may take (z within ~1e-5 of 1: a customer with age 0 and a tiny α)
_MAX_TERMS: Final = 10_000_000


class ModelError(ValueError):
    """A model file that §11 refuses; the message names the field (`bgnbd.a`, `version`, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"clv model: {field}: {message}")
        self.field = field


class ClvModel(NamedTuple):
    """A validated §11 model (BG/NBD `r, alpha, a, b`; Gamma-Gamma `p, q, v`)."""

    version: str
    fitted_at: str
    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float


class Prediction(NamedTuple):
    """The §11 numbers for one customer at one instant (the record's `clv` adds horizon and version)."""

    p_alive: float
    expected_orders: float
    expected_order_value: float
    predicted_clv: float


# -- the model file -----------------------------------------------------------------------------


def _parameter(obj: dict[str, Any], group: str, key: str) -> float:
    field = f"{group}.{key}"
    if key not in obj or obj[key] is None:
        raise ModelError(field, "missing")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(field, f"must be a number, got {type(value).__name__}")
    try:
        f = float(value)
    except OverflowError:
        raise ModelError(field, "must be finite") from None
    if not math.isfinite(f):
        raise ModelError(field, "must be finite")
    if not f > 0:
        raise ModelError(field, f"must be greater than 0, got {value!r}")
    return f


def _group(obj: dict[str, Any], group: str, keys: tuple[str, ...]) -> list[float]:
    sub = obj.get(group)
    if sub is None:
        raise ModelError(group, "missing")
    if not isinstance(sub, dict):
        raise ModelError(group, f"must be an object, got {type(sub).__name__}")
    for key in sub:
        if key not in keys:
            raise ModelError(f"{group}.{key}", f"unknown field (expected {', '.join(keys)})")
    return [_parameter(sub, group, key) for key in keys]


def parse_model(obj: Any) -> ClvModel:
    """Validate a decoded model file (SPEC §11); raises `ModelError` naming the first bad field, in
    the order model, version, fitted_at, bgnbd.{r, alpha, a, b}, gamma_gamma.{p, q, v}."""
    if not isinstance(obj, dict):
        raise ModelError("(file)", f"must be a JSON object, got {type(obj).__name__}")
    for key in obj:
        if key not in _TOP_KEYS:
            raise ModelError(str(key), f"unknown field (expected {', '.join(_TOP_KEYS)})")
    model = obj.get("model")
    if model is None:
        raise ModelError("model", "missing")
    if model != MODEL_NAME:
        raise ModelError("model", f"must be {MODEL_NAME!r}, got {model!r}")
    version = obj.get("version")
    if version is None:
        raise ModelError("version", "missing")
    if not isinstance(version, str):
        raise ModelError("version", f"must be a string, got {type(version).__name__}")
    if not 1 <= len(version) <= MAX_VERSION_CHARS:
        raise ModelError("version", f"must be 1-{MAX_VERSION_CHARS} characters, got {len(version)}")
    fitted_at = obj.get("fitted_at")
    if fitted_at is None:
        raise ModelError("fitted_at", "missing")
    if not isinstance(fitted_at, str) or parse_rfc3339(fitted_at) is None:
        raise ModelError("fitted_at", f"must be an RFC 3339 date-time like 2011-12-10T00:00:00Z, got {fitted_at!r}")
    if "fit" in obj and not isinstance(obj["fit"], dict):
        raise ModelError("fit", f"must be an object, got {type(obj['fit']).__name__}")
    r, alpha, a, b = _group(obj, "bgnbd", _BGNBD_KEYS)
    if a == 1.0:
        raise ModelError("bgnbd.a", "must not be 1 (the expected orders divide by a - 1)")
    p, q, v = _group(obj, "gamma_gamma", _GG_KEYS)
    if not q > 1.0:
        raise ModelError("gamma_gamma.q", f"must be greater than 1 (the mean order value divides by q - 1), got {q!r}")
    return ClvModel(version, fitted_at, r, alpha, a, b, p, q, v)


def load_model(path: str) -> ClvModel:
    """Read and validate a model file; `ModelError` (a ValueError) when it cannot be used, the
    message naming the field, or the file when it cannot be read or is not JSON."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ModelError("(file)", f"{path}: {exc.strerror or exc}") from None
    try:
        obj = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError("(file)", f"{path}: not JSON ({exc})") from None
    return parse_model(obj)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def model_document(model: ClvModel, fit: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model file's JSON object (`parse_model`'s inverse)."""
    doc: dict[str, Any] = {
        "model": MODEL_NAME, "version": model.version, "fitted_at": model.fitted_at,
        "bgnbd": {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b},
        "gamma_gamma": {"p": model.p, "q": model.q, "v": model.v},
    }
    if fit is not None:
        doc["fit"] = fit
    return doc


# -- numerics -----------------------------------------------------------------------------------


def hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss's ₂F₁(a, b; c; z) for 0 ≤ z < 1, a, b > 0 and c > 0, by its power series, each term
    from the last by the ratio (a+n)(b+n)/((c+n)(n+1))·z: every term is positive, so the sum has no
    cancellation, and b and c near 1e12 and nearly equal cost nothing (their ratio is formed per
    term, never their difference). About log(1e-17)/log(z) terms: slow only for z very near 1."""
    if not (0.0 <= z < 1.0):
        raise ValueError(f"hyp2f1: z must lie in [0, 1), got {z!r}")
    if not (a > 0.0 and b > 0.0 and c > 0.0):
        raise ValueError("hyp2f1: a, b and c must be positive")
    s = 1.0
    t = 1.0
    n = 0
    while n < _MAX_TERMS:
        t *= (a + n) * z / (n + 1.0) * ((b + n) / (c + n))
        s += t
        n += 1
        if t <= _EPS * s:
            # the remaining terms fall at least geometrically once the ratio is below 1
            ratio = (a + n) * z / (n + 1.0) * ((b + n) / (c + n))
            if ratio < 1.0:
                s += t * ratio / (1.0 - ratio)  # a bound on the tail, far below the sum's last bit
                return s
    raise ArithmeticError(f"hyp2f1({a!r}, {b!r}, {c!r}, {z!r}): no convergence in {_MAX_TERMS} terms")


def expected_series(rx: float, a: float, c: float, u: float) -> float | None:
    """Σ_{n≥1} (−1)^(n+1) (rx)_n (a)_(n−1) / ((c+1)_(n−1) n!) · u^n (module docstring), or None
    when its terms do not fall fast enough to sum it to full precision (the caller then uses the
    series in z)."""
    t = rx * u  # n = 1
    s = t
    largest = abs(t)
    n = 1
    while n < 100_000:
        ratio = (rx + n) * (a + n - 1.0) / ((c + n) * (n + 1.0)) * u
        t = -t * ratio
        s += t
        n += 1
        at = abs(t)
        if at > largest:
            largest = at
        if at <= _EPS * abs(s):
            if ratio >= 1.0 and u >= 1.0:
                return None  # a divergent tail: not to be trusted
            if largest > 1e4 * abs(s):
                return None  # alternating terms much larger than the sum: digits lost
            return s
        if ratio >= 1.0 and n > rx + a + 2.0 and u >= 1.0:
            return None  # growing terms: the series diverges here
    return None


def bracket(model: ClvModel, x: int, age: float, horizon: float) -> float:
    """(a+b+x−1)/(a−1)·[1 − ((α+age)/(α+age+H))^(r+x)·₂F₁(r+x, b+x; a+b+x−1; H/(α+age+H))]: the
    §11 expected orders of a customer certainly alive."""
    rx = model.r + x
    a = model.a
    c = a + model.b + x - 1.0
    base = model.alpha + age
    s = expected_series(rx, a, c, horizon / base)
    if s is not None:
        return s
    z = horizon / (base + horizon)
    log_k = rx * math.log1p(-z)  # k = (1−z)^(r+x): tiny when r+x is large, and ₂F₁ then huge
    if c > 0.0:
        return c / (a - 1.0) * (1.0 - _scaled_hyp2f1(rx, model.b + x, c, z, log_k))
    k = math.exp(log_k)
    # x = 0 and a + b < 1: c in (−1, 0]; c·(₂F₁ − 1) = Σ_{n≥1} (r)_n (b)_n/((c+1)_(n−1) n!) z^n, every
    # term positive, so no pole at c = 0
    g = _shifted_series(rx, model.b + x, c, z)
    return (c * (1.0 - k) - k * g) / (a - 1.0)


def _scaled_hyp2f1(a: float, b: float, c: float, z: float, log_k: float) -> float:
    """e^log_k · ₂F₁(a, b; c; z) (a, b, c > 0, 0 ≤ z < 1) by `hyp2f1`'s series, rescaled as it grows
    so that neither factor overflows or underflows when the product does not."""
    s = 1.0
    t = 1.0
    shift = 0.0
    n = 0
    while n < _MAX_TERMS:
        t *= (a + n) * z / (n + 1.0) * ((b + n) / (c + n))
        s += t
        n += 1
        if s > 1e200:
            s *= 1e-200
            t *= 1e-200
            shift += 200.0 * _LN10
        if t <= _EPS * s:
            ratio = (a + n) * z / (n + 1.0) * ((b + n) / (c + n))
            if ratio < 1.0:
                s += t * ratio / (1.0 - ratio)
                return s * math.exp(log_k + shift)
    raise ArithmeticError(f"clv: ₂F₁({a!r}, {b!r}, {c!r}, {z!r}): no convergence in {_MAX_TERMS} terms")


_LN10: Final = math.log(10.0)


def _shifted_series(a: float, b: float, c: float, z: float) -> float:
    """Σ_{n≥1} (a)_n (b)_n / ((c+1)_(n−1) n!) z^n = c·(₂F₁(a, b; c; z) − 1), for c > −1."""
    t = a * b * z
    s = t
    n = 1
    while n < _MAX_TERMS:
        t *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z
        s += t
        n += 1
        if t <= _EPS * s:
            return s
    raise ArithmeticError("clv: the expected-orders series did not converge")


def log_alive_odds(model: ClvModel, x: int, t_x: float, age: float) -> float:
    """log(δ·a/(b+x−1)·L^(r+x)) for x ≥ 1 (the odds of having dropped out), L = (α+age)/(α+t_x)."""
    base = model.alpha + t_x
    return (math.log(model.a) - math.log(model.b + x - 1.0)
            + (model.r + x) * math.log1p((age - t_x) / base))


def predict(model: ClvModel, x: int, t_x: float, age: float, m: float, horizon_days: float) -> Prediction:
    """SPEC §11 at `age` days after the first order: p_alive, expected orders (purchase days) in
    the next `horizon_days` days, expected order value and predicted CLV. `m` is ignored when x = 0."""
    if x >= 1:
        lo = log_alive_odds(model, x, t_x, age)
        # 1 / (1 + e^lo), without overflow either way
        p_alive = 1.0 / (1.0 + math.exp(lo)) if lo <= 0.0 else math.exp(-lo) / (1.0 + math.exp(-lo))
        xm = x * m
    else:
        p_alive = 1.0
        xm = 0.0
    orders = bracket(model, x, age, horizon_days) * p_alive
    value = model.p * (model.v + xm) / (model.p * x + model.q - 1.0)
    return Prediction(p_alive, orders, value, orders * value)


# -- the purchase summary -----------------------------------------------------------------------


class Summary(NamedTuple):
    """A customer's §11 purchase summary at an instant: repeat purchase days, the days from its
    first order day to its last and to the instant, and the mean value of its repeat days (0.0
    when x = 0)."""

    x: int
    t_x: int
    age: int
    m: float


def summarize(day_values: dict[int, float], as_of_day: int) -> Summary:
    """§11 summary from a customer's order days (UTC day index -> the sum of that day's placed
    amounts; at least one day) at the day `as_of_day` (≥ its last order day)."""
    days = sorted(day_values)
    first = days[0]
    x = len(days) - 1
    m = 0.0
    if x >= 1:
        m = math.fsum(day_values[d] for d in days[1:]) / x
    return Summary(x, days[-1] - first, as_of_day - first, m)
