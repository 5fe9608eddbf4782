"""The router's A/B statistics (``src/stats/``), transcribed operation for operation.

Arithmetic is done on numpy float64 scalars under ``errstate(all="ignore")`` so that 0/0, log(0)
and sqrt of a negative give NaN or ±inf as they do in JavaScript, instead of raising. The
distribution functions come from ``scipy.special`` (the router uses @stdlib's); both are accurate
to about 1e-15, far inside the 1e-9 this package is tested to agree with the router.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import special

F = np.float64
NAN = F(np.nan)
# Above this many degrees of freedom Student's t is taken as the normal (as the router does).
_NORMAL_DF = 1e7
_SRM_ALPHA = 0.001
_DEFAULT_STANDARDISED_TAU = 0.1


def phi(x: Any) -> np.float64:
    return F(special.ndtr(F(x)))


def phi_inverse(p: Any) -> np.float64:
    return F(special.ndtri(F(p)))


def z_critical(confidence: float) -> np.float64:
    return phi_inverse(1 - (1 - confidence) / 2)


def normal_two_sided_p(z: Any) -> np.float64:
    return 2 * phi(-np.abs(F(z)))


def student_cdf(x: Any, df: Any) -> np.float64:
    return phi(x) if df > _NORMAL_DF else F(special.stdtr(F(df), F(x)))


def student_two_sided_p(t: Any, df: Any) -> np.float64:
    return 2 * student_cdf(-np.abs(F(t)), df)


def student_quantile(p: Any, df: Any) -> np.float64:
    """The router's bisection on the t CDF (kept, rather than scipy's stdtrit, to follow it step by step)."""
    p, df = F(p), F(df)
    if not (0 < p < 1) or not (df > 0):
        return NAN
    if df > _NORMAL_DF:
        return phi_inverse(p)
    if p == 0.5:
        return F(0)
    if p < 0.5:
        return F(-student_quantile(1 - p, df))
    lo = F(0)
    hi = np.maximum(F(1), phi_inverse(p))
    while student_cdf(hi, df) < p:
        lo = hi
        hi = hi * 2
        if hi > 1e300:
            return F(np.inf)
    i = 0
    while i < 200 and hi - lo > 1e-13 * hi:
        mid = (lo + hi) / 2
        if student_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        i += 1
    return F((lo + hi) / 2)


def chi_square_upper(x: Any, k: int) -> np.float64:
    return 1 - F(special.chdtr(F(k), F(x)))


@dataclass
class Totals:
    """Stable totals of one metric for one arm (``Totals`` in the router): count, plain sum, the
    first value (``shift``), the running mean of the shifted values (``offset``) and Σ(x − mean)²."""

    n: int = 0
    sum: float = 0.0
    shift: float = 0.0
    offset: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        """Welford's update on values shifted by the first one: the router's ``Accumulator.add``."""
        if self.n == 0:
            self.shift = x
        self.n += 1
        self.sum += x
        y = x - self.shift
        d = y - self.offset
        self.offset += d / self.n
        self.m2 += d * (y - self.offset)


@dataclass
class Moments:
    n: int
    mean: np.float64
    variance: np.float64
    shift: np.float64
    offset: np.float64


def moments(t: Totals) -> Moments:
    n = t.n
    offset = F(t.offset) if n > 0 else NAN
    return Moments(
        n=n,
        mean=F(t.shift) + F(t.offset) if n > 0 else NAN,
        variance=np.maximum(F(0), F(t.m2)) / F(n - 1) if n > 1 else NAN,
        shift=F(t.shift),
        offset=offset,
    )


def mean_difference(a: Moments, b: Moments) -> np.float64:
    return (b.shift - a.shift) + (b.offset - a.offset)


def wilson_interval(successes: Any, n: Any, confidence: float = 0.95) -> tuple[np.float64, np.float64, np.float64]:
    n = F(n)
    if not (n > 0):
        return NAN, NAN, NAN
    z = z_critical(confidence)
    p = F(successes) / n
    z2n = (z * z) / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = (z / (1 + z2n)) * np.sqrt((p * (1 - p)) / n + z2n / (4 * n))
    return p, np.maximum(F(0), centre - half), np.minimum(F(1), centre + half)


def mean_interval(t: Totals, confidence: float = 0.95) -> tuple[np.float64, np.float64, np.float64]:
    m = moments(t)
    sd = np.sqrt(m.variance)
    se = sd / np.sqrt(F(m.n))
    df = m.n - 1
    tc = student_quantile(1 - (1 - confidence) / 2, df) if df > 0 else NAN
    return m.mean, m.mean - tc * se, m.mean + tc * se


def two_proportion_z_test(control: Totals, candidate: Totals, confidence: float = 0.95) -> dict[str, np.float64]:
    na, nb, sa, sb = F(control.n), F(candidate.n), F(control.sum), F(candidate.sum)
    pa = sa / na
    pb = sb / nb
    pooled = (sa + sb) / (na + nb)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    diff = pb - pa
    z = diff / se_pooled
    zc = z_critical(confidence)
    se_wald = np.sqrt((pa * (1 - pa)) / na + (pb * (1 - pb)) / nb)
    ratio = pb / pa
    se_log = np.sqrt((1 - pa) / (na * pa) + (1 - pb) / (nb * pb))
    log_ratio = np.log(ratio)
    return {
        "p_value": normal_two_sided_p(z),
        "abs_lift": diff, "abs_lift_low": diff - zc * se_wald, "abs_lift_high": diff + zc * se_wald,
        "rel_lift": ratio - 1, "rel_lift_low": np.exp(log_ratio - zc * se_log) - 1, "rel_lift_high": np.exp(log_ratio + zc * se_log) - 1,
    }


def welch_t_test(control: Totals, candidate: Totals, confidence: float = 0.95) -> dict[str, np.float64]:
    a = moments(control)
    b = moments(candidate)
    va = a.variance / F(a.n)
    vb = b.variance / F(b.n)
    se = np.sqrt(va + vb)
    diff = mean_difference(a, b)
    t = diff / se
    df = ((va + vb) * (va + vb)) / ((va * va) / F(a.n - 1) + (vb * vb) / F(b.n - 1))
    tc = student_quantile(1 - (1 - confidence) / 2, df)
    zc = z_critical(confidence)
    ratio = b.mean / a.mean
    se_ratio = np.sqrt(vb + ratio * ratio * va) / np.abs(a.mean)
    return {
        "p_value": student_two_sided_p(t, df),
        "abs_lift": diff, "abs_lift_low": diff - tc * se, "abs_lift_high": diff + tc * se,
        "rel_lift": ratio - 1, "rel_lift_low": ratio - 1 - zc * se_ratio, "rel_lift_high": ratio - 1 + zc * se_ratio,
    }


def required_sample_size(*, mde: float, baseline_rate: Optional[Any] = None, sd: Optional[Any] = None,
                         alpha: float = 0.05, power: float = 0.8) -> np.float64:
    delta = np.abs(F(mde))
    z_alpha = z_critical(1 - alpha)
    z_beta = phi_inverse(power)
    if not (delta > 0):
        return NAN
    if baseline_rate is not None:
        p1 = F(baseline_rate)
        p2 = p1 + delta if p1 + delta <= 1 else p1 - delta
        p_bar = (p1 + p2) / 2
        root = z_alpha * np.sqrt(2 * p_bar * (1 - p_bar)) + z_beta * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
        n = (root * root) / (delta * delta)
    else:
        z = z_alpha + z_beta
        s = F(sd)
        n = (2 * s * s * z * z) / (delta * delta)
    return np.ceil(n - 1e-9) if np.isfinite(n) else NAN


def remaining_samples(required: np.float64, current: int) -> np.float64:
    return NAN if np.isnan(required) else np.maximum(F(0), required - F(current))


def msprt_p_value(control: Totals, candidate: Totals, *, mde: Optional[float] = None, tau2: Optional[float] = None) -> np.float64:
    a = moments(control)
    b = moments(candidate)
    v = a.variance + b.variance
    var_theta = a.variance / F(a.n) + b.variance / F(b.n)
    n = v / var_theta
    theta_hat = mean_difference(a, b)
    if tau2 is not None:
        t2 = F(tau2)
    elif mde is None:
        t2 = F(_DEFAULT_STANDARDISED_TAU) ** 2 * (v / 2)
    else:
        t2 = F(mde) ** 2
    spread = v + n * t2
    log_lambda = 0.5 * np.log(v / spread) + (n * n * t2 * theta_hat * theta_hat) / (2 * v * spread)
    return NAN if np.isnan(log_lambda) else np.minimum(F(1), np.exp(-log_lambda))


def srm_test(observed: list[int], weights: list[float]) -> dict[str, Any]:
    total = F(0)
    weight_sum = F(0)
    k = 0
    for o, w in zip(observed, weights):
        if w > 0:
            total += F(o)
            weight_sum += F(w)
            k += 1
    if k < 2 or total == 0:
        return {"chi2": 0, "df": max(0, k - 1), "p_value": 1, "mismatch": False}
    chi2 = F(0)
    for o, w in zip(observed, weights):
        if w > 0:
            expected = (total * F(w)) / weight_sum
            d = F(o) - expected
            chi2 += (d * d) / expected
    df = k - 1
    p = chi_square_upper(chi2, df)
    return {"chi2": float(chi2), "df": df, "p_value": float(p), "mismatch": bool(p < _SRM_ALPHA)}


VERDICTS = ("collecting data", "candidate better", "candidate worse", "no detectable difference",
            "sample ratio mismatch: investigate")
_SEVERITY = ("sample ratio mismatch: investigate", "candidate worse", "candidate better", "collecting data",
             "no detectable difference")


def verdict(*, srm_mismatch: bool, control_outcomes: int, candidate_outcomes: int, p_sequential: Any, abs_lift: Any,
            required_per_arm: Any, alpha: float = 0.05, min_sample_per_arm: int = 100, higher_is_better: bool = True) -> str:
    if srm_mismatch:
        return "sample ratio mismatch: investigate"
    smallest = min(control_outcomes, candidate_outcomes)
    if not (smallest >= min_sample_per_arm):
        return "collecting data"
    if p_sequential < alpha and abs_lift != 0 and not np.isnan(abs_lift):
        return "candidate better" if (abs_lift > 0) == higher_is_better else "candidate worse"
    if smallest >= required_per_arm:
        return "no detectable difference"
    return "collecting data"


def combine_verdicts(verdicts: list[str]) -> str:
    for v in _SEVERITY:
        if v in verdicts:
            return v
    return "collecting data"


def finite(x: Any) -> Optional[float]:
    """JSON's view of a number: None for NaN and ±inf (the router's ``finite``)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None
