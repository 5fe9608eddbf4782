"""modelsplit.read_records: rotated files in order, partial and bad lines skipped, streaming, the
DataFrames' shape, and agreement with `modelsplit report --json` on the shared fixture and on
records a real router wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelsplit import SkippedLine, expand_paths, iter_records, read_records, record_files
from support import FIXTURES, run_cli


def prediction(i: int, model: str = "v1", route: str = "churn", **extra: Any) -> dict[str, Any]:
    return {"type": "prediction", "schema": 1, "ts": f"2026-11-24T20:00:{i:02d}.000Z", "request_id": f"r{i}", "route": route,
            "user_id": f"u{i}", "assignment": "hash",
            "primary": {"model": model, "status": 200, "latency_ms": 1.5 + i, "prediction": [0.1 * i], "error": None},
            "shadows": [], **extra}


def write(path: Path, records: list[Any], tail: bytes = b"") -> None:
    path.write_bytes(b"".join((json.dumps(r) if not isinstance(r, str) else r).encode() + b"\n" for r in records) + tail)


def test_rotated_files_are_read_oldest_first_and_a_partial_last_line_is_skipped(tmp_path: Path) -> None:
    base = tmp_path / "predictions.jsonl"
    write(tmp_path / "predictions.jsonl.2", [prediction(0), prediction(1)])
    write(tmp_path / "predictions.jsonl.1", [prediction(2), "", prediction(3)])  # a blank line is not a record
    write(base, [prediction(4)], tail=b'{"type":"prediction","schema":1,"route":"churn","primary":{"mo')
    write(tmp_path / "predictions.jsonl.gz", [prediction(9)])  # not a rotation: ignored
    write(tmp_path / "predictions.jsonl.01", [prediction(9)])
    assert [Path(p).name for p in record_files(base)] == ["predictions.jsonl.2", "predictions.jsonl.1", "predictions.jsonl"]
    skipped: list[SkippedLine] = []
    recs = read_records(base, on_skip=skipped.append)
    assert list(recs.predictions["request_id"]) == ["r0", "r1", "r2", "r3", "r4"]
    assert recs.skipped_lines == 1 and skipped == [SkippedLine(str(base), 2, "invalid_json")]
    assert [Path(f).name for f in recs.files] == ["predictions.jsonl.2", "predictions.jsonl.1", "predictions.jsonl"]
    assert str(recs.predictions["ts"].dtype).startswith("datetime64") and str(recs.predictions["ts"].dt.tz) == "UTC"
    assert recs.predictions["ts"].is_monotonic_increasing


def test_the_shared_partial_fixture(tmp_path: Path) -> None:
    skipped: list[SkippedLine] = []
    seqs = [r["seq"] for r in iter_records(FIXTURES / "record-partial.jsonl", on_skip=skipped.append)]
    assert seqs == [0, 1]
    assert [(s.line, s.reason) for s in skipped] == [(4, "invalid_json")]


def test_lines_that_are_not_records(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(
        json.dumps(prediction(1)).encode() + b"\r\n"          # CRLF
        + b"[1, 2]\n"                                          # not an object
        + b'{"type":"prediction","value":NaN}\n'              # JSON.parse refuses NaN
        + b"   \n"
        + json.dumps(prediction(2, schema=2)).encode() + b"\n"      # a newer format: not read
        + json.dumps({"type": "prediction", "route": "churn"}).encode() + b"\n"  # no primary
        + json.dumps({"type": "outcome", "route": "churn", "model": "v1", "metric": "m", "value": True}).encode() + b"\n"
        + json.dumps({"type": "outcome", "route": "churn", "model": "v1", "metric": "m", "value": 2e15}).encode() + b"\n"
        + json.dumps({"type": "outcome", "schema": 1, "ts": "2026-11-24T20:00:00.000Z", "route": "churn", "request_id": None,
                      "user_id": "u1", "model": "v1", "metric": "m", "value": 3, "attributed_by": "user_id"}).encode() + b"\n"
        + json.dumps({"type": "decision", "schema": 1, "ts": "2026-11-24T20:00:00.000Z", "route": "churn", "action": "step", "weights": {"v1": 50}}).encode() + b"\n"
        + json.dumps({"type": "heartbeat"}).encode() + b"\n"
    )
    recs = read_records(f)
    assert list(recs.predictions["request_id"]) == ["r1"]
    assert recs.skipped_lines == 2
    assert recs.invalid == 4 and recs.other == 1
    assert recs.outcomes.to_dict("records")[0] | {"ts": None} == {
        "ts": None, "route": "churn", "request_id": None, "user_id": "u1", "model": "v1", "metric": "m", "value": 3.0,
        "attributed_by": "user_id", "schema": 1, "model_version": None, "counted": True, "bucket": None}
    assert recs.outcomes["value"].dtype == "float64"
    assert recs.decisions.loc[0, "action"] == "step" and recs.decisions.loc[0, "weights"] == {"v1": 50}


def test_shadow_columns(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    write(f, [
        prediction(1, shadows=[
            {"model": "v3", "status": 200, "latency_ms": 2.0, "prediction": [0.2], "error": None,
             "comparison": {"agree": False, "abs_diff_max": 0.1, "abs_diff_mean": 0.1, "fraction_agree": 0}},
            {"model": "v4", "dropped": "max_in_flight"}]),
        prediction(2, shadows=[{"model": "v3", "status": 504, "latency_ms": 1000.0, "prediction": None, "error": "timeout",
                                "comparison": {"error": "shadow failed: timeout"}}]),
        prediction(3),
    ])
    p = read_records(f, include_input=True).predictions
    assert list(p.columns[:14]) == ["ts", "request_id", "route", "user_id", "assignment", "model", "status", "latency_ms",
                                    "prediction", "error", "prediction_error", "input_omitted", "schema", "input"]
    assert [c for c in p.columns if c.startswith("shadow.")] == [
        "shadow.v3.status", "shadow.v3.latency_ms", "shadow.v3.prediction", "shadow.v3.error", "shadow.v3.agree",
        "shadow.v3.abs_diff_max", "shadow.v3.abs_diff_mean", "shadow.v3.fraction_agree", "shadow.v3.comparison_error",
        "shadow.v4.dropped"]
    assert p["shadow.v3.agree"].tolist()[0] is False and pd.isna(p["shadow.v3.agree"][1]) and pd.isna(p["shadow.v3.agree"][2])
    assert p["shadow.v3.status"].tolist()[:2] == [200, 504] and str(p["shadow.v3.status"].dtype) == "Int64"
    assert p["shadow.v3.comparison_error"][1] == "shadow failed: timeout"
    assert p["shadow.v4.dropped"][0] == "max_in_flight" and pd.isna(p["shadow.v4.dropped"][1])
    assert p["prediction"][0] == [0.1]
    assert p["model_version"].isna().all()  # no MLflow versions behind these models


def test_model_versions(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    r1 = prediction(1, shadows=[{"model": "v3", "model_version": "7", "dropped": "max_in_flight"}])
    r1["primary"]["model_version"] = "2"
    r2 = prediction(2, shadows=[{"model": "v3", "model_version": None, "status": 200, "latency_ms": 1.0, "prediction": [0.1],
                                 "error": None, "comparison": {"agree": True, "abs_diff_max": 0, "abs_diff_mean": 0, "fraction_agree": 1}}])
    r2["primary"]["model_version"] = None
    write(f, [r1, r2])
    p = read_records(f).predictions
    assert p["model_version"][0] == "2" and pd.isna(p["model_version"][1])
    assert p["shadow.v3.model_version"][0] == "7" and pd.isna(p["shadow.v3.model_version"][1])


def test_outcome_versions(tmp_path: Path) -> None:
    f = tmp_path / "o.jsonl"
    base = {"type": "outcome", "schema": 1, "ts": "2026-11-30T20:00:00.000Z", "route": "churn", "request_id": "r1",
            "user_id": "u1", "model": "v2", "metric": "m", "value": 1, "attributed_by": "request_id"}
    write(f, [base | {"model_version": "2", "counted": False}, base | {"model_version": "3"}, base])
    o = read_records(f).outcomes
    assert o["model_version"].tolist()[:2] == ["2", "3"] and pd.isna(o["model_version"][2])
    assert o["counted"].tolist() == [False, True, True]


def test_globs_of_worker_files_and_lists(tmp_path: Path) -> None:
    write(tmp_path / "predictions.w1.jsonl", [prediction(1)])
    write(tmp_path / "predictions.w2.jsonl.1", [prediction(2)])
    write(tmp_path / "predictions.w2.jsonl", [prediction(3)])
    recs = read_records(str(tmp_path / "predictions.w*.jsonl"))
    assert [Path(f).name for f in recs.files] == ["predictions.w1.jsonl", "predictions.w2.jsonl.1", "predictions.w2.jsonl"]
    assert list(recs.predictions["request_id"]) == ["r1", "r2", "r3"]
    # A list, with a file named twice (once through its base): each file once.
    again = read_records([tmp_path / "predictions.w2.jsonl", tmp_path / "predictions.w2.jsonl.1"])
    assert list(again.predictions["request_id"]) == ["r2", "r3"]
    with pytest.raises(FileNotFoundError):
        expand_paths(tmp_path / "nothing.jsonl")
    with pytest.raises(FileNotFoundError):
        expand_paths(str(tmp_path / "nothing*.jsonl"))
    with pytest.raises(IsADirectoryError):
        expand_paths(tmp_path)


def test_chunksize_streams_in_bounded_pieces(tmp_path: Path) -> None:
    f = tmp_path / "big.jsonl"
    write(f, [prediction(i % 60, request_id=f"x{i}") for i in range(2500)], tail=b'{"partial')
    chunks = list(read_records(f, chunksize=1000))
    assert [len(c.predictions) for c in chunks] == [1000, 1000, 500]
    assert sum(c.skipped_lines for c in chunks) == 1
    whole = read_records(f)
    joined = pd.concat([c.predictions for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.predictions)


def summarise_like_report(p: pd.DataFrame) -> dict[str, Any]:
    """What `modelsplit report --json` counts, computed from the DataFrame."""
    def is_error(status: pd.Series, error: pd.Series) -> pd.Series:
        s = status.fillna(0)
        return (s == 0) | (s >= 500) | error.notna()

    out: dict[str, Any] = {}
    for route, g in p.groupby("route"):
        prim = {}
        for model, h in g.groupby("model"):
            prim[model] = (len(h), int(is_error(h["status"], h["error"]).sum()))
        pairs = {}
        shadows = sorted({c.split(".")[1] for c in g.columns if c.startswith("shadow.") and g[c].notna().any()})
        for model, h in g.groupby("model"):
            for s in shadows:
                col = f"shadow.{s}.status"
                if col not in h.columns:
                    continue
                ran = h[h[col].notna()]
                if len(ran) == 0:
                    continue
                agree = ran[f"shadow.{s}.agree"] if f"shadow.{s}.agree" in ran.columns else pd.Series(dtype="boolean")
                pairs[(model, s)] = {"requests": len(ran), "compared": int(agree.notna().sum()), "agree": int(agree.fillna(False).sum()),
                                     "comparison_errors": len(ran) - int(agree.notna().sum()),
                                     "shadow_errors": int(is_error(ran[col], ran[f"shadow.{s}.error"]).sum())}
        out[route] = {"requests": len(g), "primaries": prim, "pairs": pairs}
    return out


def report_counts(doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for r in doc["routes"]:
        out[r["route"]] = {
            "requests": r["requests"],
            "primaries": {p["model"]: (p["requests"], p["errors"]) for p in r["primaries"]},
            "pairs": {(q["primary"], q["shadow"]): {"requests": q["requests"], "compared": q["compared"], "agree": q["agree"],
                                                    "comparison_errors": q["comparison_errors"], "shadow_errors": q["shadow_side"]["errors"]}
                      for q in r["pairs"]},
        }
    return out


def test_the_shared_report_fixture_counts_as_the_report_does(cli, tmp_path: Path) -> None:
    f = tmp_path / "report-small.jsonl"
    shutil.copy(FIXTURES / "report-small.jsonl", f)
    recs = read_records(f)
    cmd = run_cli(cli, "report", str(f), "--json")
    assert cmd.returncode == 0, cmd.stderr
    doc = json.loads(cmd.stdout)
    assert recs.skipped_lines == doc["skipped_lines"]
    assert len(recs.predictions) == doc["records"]["predictions"]
    assert summarise_like_report(recs.predictions) == report_counts(doc)


def test_records_a_real_router_wrote(cli, traffic) -> None:
    recs = read_records(traffic["base"])
    files = record_files(traffic["base"])
    assert len(files) > 3, "the traffic should have rotated the record file several times"
    assert recs.files == files and recs.skipped_lines == 1  # the partial line appended to the newest file
    p = recs.predictions
    served = traffic["served"]
    assert len(p) == len(served)
    by_id = p.set_index("request_id")
    for r in served:
        row = by_id.loc[r["request_id"]]
        assert row["route"] == r["route"] and row["model"] == r["model"]
        if r["user_id"] is None or row["assignment"] == "override":  # an override uses no user id
            assert pd.isna(row["user_id"])
        else:
            assert row["user_id"] == r["user_id"]
    assert set(p["assignment"]) == {"hash", "override", "missing_user_id"}
    churn = p[p["route"] == "churn"]
    # The shadow ran beside every churn request (never beside itself: it is not in the split).
    assert churn["shadow.churn-v3.status"].notna().all()
    assert churn["shadow.churn-v3.agree"].notna().all()
    assert (churn["shadow.churn-v3.abs_diff_max"] >= 0).all() and churn["shadow.churn-v3.abs_diff_max"].mean() > 0
    assert "input" not in p.columns  # request bodies only when asked for
    assert p["ts"].notna().all()
    assert len(recs.outcomes) == traffic["outcomes_sent"]
    assert set(recs.outcomes["attributed_by"]) == {"request_id", "user_id", "model"}

    cmd = run_cli(cli, "report", str(traffic["base"]), "--json")
    assert cmd.returncode == 0, cmd.stderr
    doc = json.loads(cmd.stdout)
    assert [Path(x).name for x in doc["files"]] == [Path(x).name for x in files]
    assert doc["skipped_lines"] == 1 and doc["records"]["other"] == len(recs.outcomes)
    assert summarise_like_report(p) == report_counts(doc)
    with_inputs = read_records(traffic["base"], include_input=True).predictions
    first = with_inputs.set_index("request_id").loc[served[0]["request_id"]]
    assert first["input"] == {"dataframe_records": [{"tenure_months": 0, "monthly_charges": 20, "support_calls": 0}]}
