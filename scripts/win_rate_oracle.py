"""Writes test/fixtures/stats-win-rate.json: the oracle for src/stats/win-rate.ts, from scipy.

For each (wins, ties, losses): scipy.stats.binomtest(wins, wins + losses, 0.5) two-sided p, its
Wilson interval (proportion_ci(method="wilson"), 95 %), and the Beta(1, 1) mixture likelihood
ratio against 1/2 through scipy.special.betaln. Run: python scripts/win_rate_oracle.py
(scipy pinned in clients/python/requirements-test.txt).
"""
import json
import math
from pathlib import Path

import scipy
from scipy.special import betaln
from scipy.stats import binomtest

CASES = [
    (0, 0, 0), (1, 0, 0), (0, 3, 1), (5, 2, 5), (6, 1, 4), (9, 0, 1), (18, 7, 6), (40, 10, 60),
    (55, 30, 45), (120, 50, 80), (500, 100, 450), (1030, 200, 970), (5200, 900, 4800),
    (25_100, 3000, 24_900), (100_450, 20_000, 99_550), (300, 0, 0),
]

rows = []
for wins, ties, losses in CASES:
    n = wins + losses
    row = {"wins": wins, "ties": ties, "losses": losses}
    if n == 0:
        row.update(signP=1.0, sequentialP=1.0, low=None, high=None)
    else:
        t = binomtest(wins, n, 0.5)
        ci = t.proportion_ci(confidence_level=0.95, method="wilson")
        log_lambda = betaln(wins + 1, losses + 1) - betaln(1, 1) + n * math.log(2)
        row.update(signP=float(t.pvalue), low=float(ci.low), high=float(ci.high), sequentialP=float(min(1.0, math.exp(-log_lambda))))
    rows.append(row)

out = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "stats-win-rate.json"
out.write_text(json.dumps({"scipy": scipy.__version__, "rows": rows}, indent=1) + "\n")
print(f"wrote {len(rows)} rows to {out}")
