"""An oracle for the router's experiment analysis (src/experiment), independent of it: statsmodels
and scipy on the raw rows of a seeded experiment, against what `modelsplit report --config CFG
--json FILES` prints under `experiments` (issue 17), to a relative 1e-9.

The unit of analysis is the user; users are hashed into buckets,
bucket = murmurhash3_x86_32(b"modelsplit-unit:" + utf8(user_id), seed 0) % buckets,
and every estimate's variance is cluster-robust with the buckets as clusters:

* an arm's mean (rate) is the intercept of ``OLS(y, 1)`` over the arm's outcomes, with
  ``cov_type="cluster"``: its standard error is ``models[m].se`` (statsmodels' small-sample factor
  is G/(G − 1)·(N − 1)/(N − K); with K = 1 that is G/(G − 1), G the arm's non-empty buckets);
* a ratio metric (clicked / impressions) is ``WLS`` of each user's ratio Σclicked/Σimpressions on
  1 with weights Σimpressions, cluster-robust: its estimate is Σnum/Σden and its whitened scores
  are y_u − R·x_u, so its variance is the delta method's G/(G − 1)·Σ_b (y_b − R·x_b)² / (Σx)²;
* CUPED: per arm, one OLS of the stacked rows (revenue rows on [1, 0], revenue_pre rows on [0, 1])
  gives (Ȳ, X̄) and their cluster-robust covariance; θ = (Cov_a + Cov_b) / (VarX_a + VarX_b) and
  the adjusted lift ΔȲ − θ·ΔX̄, with variance Σ_arms Var(Ȳ − θX̄). The stacked fit has K = 2, so its
  covariance is taken without statsmodels' (N − 1)/(N − K) factor (``use_correction=False``) and
  scaled by G/(G − 1), the factor of the one-mean fits: its diagonal then equals their variances;
* a lift's standard error is sqrt(se_a² + se_b²) (arms are independent); its fixed-horizon p is the
  two-sided Student t with the fewer of Welch–Satterthwaite's df (each arm's G − 1) and
  Satterthwaite's 2V²/Var(V̂), Var(V̂) from the spread of the buckets' squared scores (numpy from
  the raw rows: a variance estimate is noisier than Welch assumes when a few users weigh a lot); the family of outcome
  metrics × candidates is adjusted with ``multipletests`` (holm, fdr_bh);
* also: the intervals (Student t at G − 1 df per arm, at the lift's df for a lift), the relative
  lift's delta-method interval, a guardrail's one-sided non-inferiority p, the sample-ratio
  chi-square on users (scipy.stats.chisquare). Not here: the always-valid (mSPRT) p-values, which
  have no statsmodels counterpart, and the relative lift's interval under CUPED.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from scipy import stats
from statsmodels.stats.multitest import multipletests

from experiment_data import ARMS, COVARIATE, OUTCOMES, Experiment, make_experiment, write_experiment
from oracle import Oracle, adjusted, lift_df, variance_noise
from support import run_cli

REL = 1e-9
ALPHA = 0.05


def report(cli: Path, config: Path, records: Path) -> dict[str, Any]:
    cmd = run_cli(cli, "report", "--config", str(config), "--json", str(records))
    assert cmd.returncode == 0, cmd.stderr
    (route,) = json.loads(cmd.stdout)["experiments"]
    return route


class Checker:
    """Collects every comparison: a mismatch names the field, the router's value and the oracle's."""

    def __init__(self) -> None:
        self.bad: list[str] = []
        self.worst = 0.0
        self.count = 0

    def close(self, where: str, ours: Any, theirs: float, rel: float = REL) -> None:
        self.count += 1
        if ours is None or not math.isclose(ours, theirs, rel_tol=rel, abs_tol=0.0):
            self.bad.append(f"{where}: router {ours!r}, oracle {theirs!r}")
            return
        if theirs != 0:
            self.worst = max(self.worst, abs(ours - theirs) / abs(theirs))

    def equal(self, where: str, ours: Any, theirs: Any) -> None:
        self.count += 1
        if ours != theirs:
            self.bad.append(f"{where}: router {ours!r}, oracle {theirs!r}")


@pytest.fixture(scope="module")
def experiment() -> Experiment:
    return make_experiment()


CASES = [pytest.param(None, None, "holm", id="64-buckets-holm"), pytest.param(100, "bh", "fdr_bh", id="100-buckets-bh")]


@pytest.mark.parametrize(("buckets", "correction", "method"), CASES)
def test_report_equals_statsmodels(cli: Path, tmp_path: Path, experiment: Experiment, buckets: Any, correction: Any, method: str) -> None:
    config, records = write_experiment(tmp_path, experiment, buckets=buckets, correction=correction)
    route = report(cli, config, records)
    k = buckets or 64
    oracle = Oracle(experiment, k)
    check = Checker()
    assert route["unit"] == "user" and route["buckets"] == k and route["correction"] == (correction or "holm")
    assert route["family"] == len(OUTCOMES) * (len(ARMS) - 1)
    metrics = route["metrics"]
    control, candidate = ARMS

    # Per arm: the estimate (intercept), its cluster-robust se, the interval with G − 1 df, the counts.
    for name in (*OUTCOMES, COVARIATE):
        for arm in ARMS:
            o = oracle.estimate(name, arm)
            m = metrics[name]["models"][arm]
            where = f"{name}.models.{arm}"
            check.close(f"{where}.{'rate' if 'rate' in m else 'mean'}", m.get("rate", m.get("mean")), o["estimate"])
            check.close(f"{where}.se", m["se"], o["se"])
            t = stats.t.ppf(1 - ALPHA / 2, o["G"] - 1)
            check.close(f"{where}.ci[0]", m["ci"][0], o["estimate"] - t * o["se"])
            check.close(f"{where}.ci[1]", m["ci"][1], o["estimate"] + t * o["se"])
            check.equal(f"{where}.buckets", m["buckets"], o["G"])
            check.equal(f"{where}.outcomes", m["outcomes"], o["n"])
            check.equal(f"{where}.users", m["users"], sum(1 for a in experiment.users.values() if a == arm))
    # Some arm of the sparse metric has empty buckets: G is counted per arm, as statsmodels counts groups.
    assert min(metrics["errors_seen"]["models"][a]["buckets"] for a in ARMS) < k

    # The candidate against the control.
    for name in OUTCOMES:
        a, b = oracle.estimate(name, control), oracle.estimate(name, candidate)
        c = metrics[name]["comparisons"][candidate]
        where = f"{name}.comparisons.{candidate}"
        noise_a = variance_noise(oracle.residuals(name, control))
        noise_b = variance_noise(oracle.residuals(name, candidate))
        df = lift_df(a["var"], a["G"], b["var"], b["G"], noise_a, noise_b)
        if name == "revenue":
            cu = oracle.cuped(name, COVARIATE, control, candidate)
            # The stacked fit's diagonal is each mean's own variance (no bucket is empty here).
            check.close("cuped.VarY_a", cu["cov_a"][0, 0], a["var"])
            check.close("cuped.VarX_a", cu["cov_a"][1, 1], oracle.mean(COVARIATE, control)["var"])
            check.close(f"{where}.cuped.theta", c["cuped"]["theta"], cu["theta"])
            check.close(f"{where}.abs_lift (CUPED)", c["abs_lift"], cu["diff"])
            check.close(f"{where}.se (CUPED)", c["se"], cu["se"])
            check.close(f"{where}.cuped.unadjusted_abs_lift", c["cuped"]["unadjusted_abs_lift"], b["estimate"] - a["estimate"])
            check.close(f"{where}.cuped.unadjusted_se", c["cuped"]["unadjusted_se"], math.sqrt(a["var"] + b["var"]))
            check.close(f"{where}.cuped.variance_reduction", c["cuped"]["variance_reduction"], cu["variance_reduction"])
            check.close(f"{where}.rel_lift (CUPED)", c["rel_lift"], cu["diff"] / a["estimate"])
            diff, se = cu["diff"], cu["se"]
            # The fixed-horizon p and interval of CUPED are checked in test_cuped_welch_df below.
        else:
            diff, se = b["estimate"] - a["estimate"], math.sqrt(a["var"] + b["var"])
            check.close(f"{where}.abs_lift", c["abs_lift"], diff)
            check.close(f"{where}.se", c["se"], se)
            check.close(f"{where}.df", c["df"], df)
            check.close(f"{where}.p_value", c["p_value"], 2 * stats.t.sf(abs(diff / se), df))
            tq = stats.t.ppf(1 - ALPHA / 2, df)
            check.close(f"{where}.abs_lift_ci[0]", c["abs_lift_ci"][0], diff - tq * se)
            check.close(f"{where}.abs_lift_ci[1]", c["abs_lift_ci"][1], diff + tq * se)
            # Relative lift B/A − 1 and its delta-method interval (normal), Var(B/A) ≈ (Var B + (B/A)²·Var A)/A².
            ratio = b["estimate"] / a["estimate"]
            check.close(f"{where}.rel_lift", c["rel_lift"], ratio - 1)
            se_ratio = math.sqrt(b["var"] + ratio**2 * a["var"]) / abs(a["estimate"])
            z = stats.norm.ppf(1 - ALPHA / 2)
            check.close(f"{where}.rel_lift_ci[0]", c["rel_lift_ci"][0], ratio - 1 - z * se_ratio)
            check.close(f"{where}.rel_lift_ci[1]", c["rel_lift_ci"][1], ratio - 1 + z * se_ratio)
        if name == "errors_seen":
            # Guardrail: one-sided non-inferiority at the margin (lower is better here).
            margin = 0.05
            g = c["guardrail"]
            check.equal(f"{where}.guardrail.margin", g["margin"], margin)
            check.close(f"{where}.guardrail.p_value", g["p_value"], stats.t.sf((-diff + margin) / se, df))

    # The family's adjusted p-values: multipletests over the (checked) raw p-values, in any order.
    names = list(OUTCOMES)
    raw = [metrics[n]["comparisons"][candidate]["p_value"] for n in names]
    adjusted = multipletests(raw, alpha=ALPHA, method=method)[1]
    for n, p in zip(names, adjusted):
        check.close(f"{n}.comparisons.{candidate}.p_value_adjusted", metrics[n]["comparisons"][candidate]["p_value_adjusted"], float(p))
    assert any(0 < p < 1 and p != q for p, q in zip(adjusted, raw))  # the adjustment moved something

    # Sample ratio on users: chi-square against the shares in force (50/50).
    users = [sum(1 for a in experiment.users.values() if a == arm) for arm in ARMS]
    chi = stats.chisquare(users, [sum(users) / 2] * 2)
    check.close("srm.chi2", route["srm"]["chi2"], float(chi.statistic))
    check.close("srm.p_value", route["srm"]["p_value"], float(chi.pvalue))
    check.equal("srm.observed", route["srm"]["observed"], dict(zip(ARMS, users)))

    assert check.bad == [], "\n".join(check.bad)
    print(f"{check.count} numbers match statsmodels/scipy; largest relative difference {check.worst:.2g}")


@pytest.mark.parametrize(("buckets", "correction", "method"), CASES[:1])
def test_cuped_p_value_and_interval(cli: Path, tmp_path: Path, experiment: Experiment, buckets: Any, correction: Any, method: str) -> None:
    """The fixed-horizon test of the CUPED-adjusted lift: Student t on ΔȲ − θ·ΔX̄ over its
    standard error, df from the two arms' variances of Ȳ − θ·X̄ (the estimates being compared) and
    the buckets' adjusted scores d_Y − θ·d_X."""
    config, records = write_experiment(tmp_path, experiment, buckets=buckets, correction=correction)
    route = report(cli, config, records)
    oracle = Oracle(experiment, buckets or 64)
    control, candidate = ARMS
    cu = oracle.cuped("revenue", COVARIATE, control, candidate)
    a, b = oracle.mean("revenue", control), oracle.mean("revenue", candidate)
    c = route["metrics"]["revenue"]["comparisons"][candidate]
    th = cu["theta"]
    na = variance_noise(adjusted(oracle.residuals("revenue", control), oracle.residuals(COVARIATE, control), th))
    nb = variance_noise(adjusted(oracle.residuals("revenue", candidate), oracle.residuals(COVARIATE, candidate), th))
    df = lift_df(cu["var_a"], a["G"], cu["var_b"], b["G"], na, nb)
    check = Checker()
    check.close("revenue.comparisons.b.df (CUPED)", c["df"], df)
    check.close("revenue.comparisons.b.p_value (CUPED)", c["p_value"], 2 * stats.t.sf(abs(cu["diff"] / cu["se"]), df))
    tq = stats.t.ppf(1 - ALPHA / 2, df)
    check.close("revenue.comparisons.b.abs_lift_ci[0] (CUPED)", c["abs_lift_ci"][0], cu["diff"] - tq * cu["se"])
    check.close("revenue.comparisons.b.abs_lift_ci[1] (CUPED)", c["abs_lift_ci"][1], cu["diff"] + tq * cu["se"])
    assert check.bad == [], "\n".join(check.bad)
