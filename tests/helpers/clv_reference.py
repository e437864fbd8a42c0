"""An independent evaluation of SPEC §11 (the oracle's and the CLV tests'): the formulas as
written, at 45 digits with mpmath, the hypergeometric function by its defining series."""

from __future__ import annotations

from typing import Any

import mpmath as mp

mp.mp.dps = 45


def mp_hyp2f1(a: float, b: float, c: float, z: float) -> mp.mpf:
    """The defining power series, summed at 50 digits (no transformation)."""
    a_, b_, c_, z_ = mp.mpf(a), mp.mpf(b), mp.mpf(c), mp.mpf(z)
    s = t = mp.mpf(1)
    n = 0
    while True:
        t *= (a_ + n) * (b_ + n) / ((c_ + n) * (n + 1)) * z_
        s += t
        n += 1
        if abs(t) < mp.mpf(10) ** -40 * abs(s) and (a_ + n) * z_ < n + 1:
            return s


def mp_predict(m: Any, x: int, t_x: float, age: float, mv: float, horizon: float) -> tuple[mp.mpf, ...]:
    """§11's formulas as written, at 50 digits."""
    r, al, a, b, p, q, v = (mp.mpf(t) for t in (m.r, m.alpha, m.a, m.b, m.p, m.q, m.v))
    h = mp.mpf(horizon)
    delta = 1 if x >= 1 else 0
    den = 1 + delta * a / (b + x - 1) * ((al + age) / (al + t_x)) ** (r + x)
    p_alive = 1 / den
    c = a + b + x - 1
    # the defining series (as mp_hyp2f1), here, with the exact (mp) c: a + b + x − 1 near 1e12 must not be rounded
    z = h / (al + age + h)
    s = t = mp.mpf(1)
    n = 0
    while True:
        t *= (r + x + n) * (b + x + n) / ((c + n) * (n + 1)) * z
        s += t
        n += 1
        if abs(t) < mp.mpf(10) ** -40 * abs(s) and (r + x + n) * z < n + 1:
            break
    f = s
    orders = c / (a - 1) * (1 - ((al + age) / (al + age + h)) ** (r + x) * f) / den
    value = p * (v + (x * mp.mpf(mv) if x else 0)) / (p * x + q - 1)
    return p_alive, orders, value, orders * value
