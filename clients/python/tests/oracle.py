"""The statsmodels oracle of the router's experiment analysis (see test_experiment_oracle.py for
the formulas): per arm and metric, the numbers statsmodels gives from the raw rows of an
:class:`~experiment_data.Experiment`, with users hashed into buckets as the router hashes them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.regression.linear_model import OLS, WLS

from experiment_data import Experiment
from modelsplit._hash import murmur3_32, utf8


def bucket_of(user: str, buckets: int) -> int:
    return murmur3_32(b"modelsplit-unit:" + utf8(user), 0) % buckets


class Oracle:
    """statsmodels' numbers for one experiment analysed with `buckets` buckets."""

    def __init__(self, e: Experiment, buckets: int) -> None:
        self.e = e
        self.buckets = buckets
        self.bucket = {u: bucket_of(u, buckets) for u in e.users}

    def _rows(self, metric: str, arm: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        rows = [(u, v) for u, a, v in self.e.rows[metric] if a == arm]
        users = [u for u, _ in rows]
        return np.array([v for _, v in rows], dtype=float), np.array([self.bucket[u] for u in users]), users

    def mean(self, metric: str, arm: str) -> dict[str, float]:
        """Intercept-only OLS, cluster-robust over buckets (statsmodels' default correction)."""
        y, g, _ = self._rows(metric, arm)
        res = OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": g})
        G = len(np.unique(g))
        return {"estimate": float(res.params[0]), "se": float(res.bse[0]), "var": float(res.bse[0] ** 2), "G": G, "n": len(y)}

    def ratio(self, num: str, den: str, arm: str) -> dict[str, float]:
        """WLS of each user's ratio with weights its denominator, cluster-robust over buckets."""
        y_u: dict[str, float] = {}
        x_u: dict[str, float] = {}
        for u, a, v in self.e.rows[num]:
            if a == arm:
                y_u[u] = y_u.get(u, 0.0) + v
        for u, a, v in self.e.rows[den]:
            if a == arm:
                x_u[u] = x_u.get(u, 0.0) + v
        users = sorted(set(y_u) | set(x_u))
        y = np.array([y_u.get(u, 0.0) for u in users])
        x = np.array([x_u.get(u, 0.0) for u in users])
        assert (x > 0).all(), "every user of the data set has impressions"
        g = np.array([self.bucket[u] for u in users])
        res = WLS(y / x, np.ones(len(users)), weights=x).fit(cov_type="cluster", cov_kwds={"groups": g})
        assert res.params[0] == pytest.approx(y.sum() / x.sum(), rel=1e-12)
        return {"estimate": float(res.params[0]), "se": float(res.bse[0]), "var": float(res.bse[0] ** 2),
                "G": len(np.unique(g)), "n": sum(1 for _, a, _ in self.e.rows[num] if a == arm)}

    def residuals(self, metric: str, arm: str) -> dict[int, float]:
        """Per occupied bucket, Σ (y − R·x) over its rows (users for the ratio) divided by Σx: the
        scores whose G/(G − 1)·Σ² is the variance above (numpy, from the raw rows)."""
        if metric == "ctr":
            est = self.ratio("clicked", "impressions", arm)["estimate"]
            out: dict[int, float] = {}
            den = 0.0
            for u, a, v in self.e.rows["clicked"]:
                if a == arm:
                    out[self.bucket[u]] = out.get(self.bucket[u], 0.0) + v
            for u, a, v in self.e.rows["impressions"]:
                if a == arm:
                    out[self.bucket[u]] = out.get(self.bucket[u], 0.0) - est * v
                    den += v
            return {b: d / den for b, d in out.items()}
        y, g, _ = self._rows(metric, arm)
        est = y.mean()
        out = {}
        for v, b in zip(y, g):
            out[int(b)] = out.get(int(b), 0.0) + (v - est)
        return {b: d / len(y) for b, d in out.items()}

    def estimate(self, metric: str, arm: str) -> dict[str, float]:
        return self.ratio("clicked", "impressions", arm) if metric == "ctr" else self.mean(metric, arm)

    def stacked(self, metric: str, covariate: str, arm: str) -> np.ndarray:
        """(Ȳ, X̄) and their cluster-robust covariance from one OLS of the stacked rows."""
        y, gy, _ = self._rows(metric, arm)
        x, gx, _ = self._rows(covariate, arm)
        endog = np.concatenate([y, x])
        exog = np.zeros((len(y) + len(x), 2))
        exog[: len(y), 0] = 1
        exog[len(y):, 1] = 1
        g = np.concatenate([gy, gx])
        res = OLS(endog, exog).fit(cov_type="cluster", cov_kwds={"groups": g, "use_correction": False})
        G = len(np.unique(g))
        return np.asarray(res.params), np.asarray(res.cov_params()) * G / (G - 1)

    def cuped(self, metric: str, covariate: str, control: str, candidate: str) -> dict[str, float]:
        (ya, xa), ca = self.stacked(metric, covariate, control)
        (yb, xb), cb = self.stacked(metric, covariate, candidate)
        theta = (ca[0, 1] + cb[0, 1]) / (ca[1, 1] + cb[1, 1])
        c = np.array([1.0, -theta])
        var_a, var_b = float(c @ ca @ c), float(c @ cb @ c)
        raw = ca[0, 0] + cb[0, 0]
        return {"theta": float(theta), "diff": float((yb - ya) - theta * (xb - xa)), "var_a": var_a, "var_b": var_b,
                "se": math.sqrt(var_a + var_b), "unadjusted_abs_lift": float(yb - ya), "unadjusted_se": math.sqrt(raw),
                "variance_reduction": 1 - (var_a + var_b) / raw, "cov_a": ca, "cov_b": cb}


def welch_df(va: float, ga: int, vb: float, gb: int) -> float:
    return (va + vb) ** 2 / (va**2 / (ga - 1) + vb**2 / (gb - 1))


def variance_noise(d: dict[int, float]) -> float:
    """The spread of a variance estimate V = Σ u_b, u_b = G/(G − 1)·d_b²: G/(G − 1)·Σ (u_b − V/G)²."""
    G = len(d)
    f = G / (G - 1)
    u = np.array([f * x * x for x in d.values()])
    return float(f * ((u - u.sum() / G) ** 2).sum())


def lift_df(va: float, ga: int, vb: float, gb: int, na: float, nb: float) -> float:
    """Welch's df, or Satterthwaite's 2V²/Var(V̂) from the buckets' squared scores, whichever is fewer."""
    return min(welch_df(va, ga, vb, gb), 2 * (va + vb) ** 2 / (na + nb))


def adjusted(dy: dict[int, float], dx: dict[int, float], theta: float) -> dict[int, float]:
    return {b: dy.get(b, 0.0) - theta * dx.get(b, 0.0) for b in set(dy) | set(dx)}
