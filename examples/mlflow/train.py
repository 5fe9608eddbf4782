"""Trains three churn models and registers them in MLflow as versions 1, 2 and 3 of `churn`.

    python train.py [--tracking-uri http://127.0.0.1:5050]     # or MLFLOW_TRACKING_URI

The data is synthetic and seeded (the same on every machine): customers with a tenure, a monthly
charge, support calls, a month-to-month contract or not and a number of products; whether they
churn is drawn from a logistic model of those (`churn_probability`, which traffic.py uses as the
ground truth of its simulated users). Each model is a StandardScaler and a LogisticRegression
with its own hyperparameters, trained in its own run of the experiment `churn-training` with its
parameters and hold-out metrics (accuracy, ROC AUC, recall), and logged with
`pyfunc_predict_fn="predict_proba"`: the served model answers the probability of each class,
`{"predictions": [[p_stay, p_churn]]}`, per input row.

    version 1  C=0.01, l1_ratio=1 (L1)   the cautious one: high accuracy, flags few churners
    version 2  C=1, class_weight balanced flags most churners: lower accuracy, more of them kept
    version 3  C=0.05, l1_ratio=0.5       the challenger (alias `challenger`), for the shadow

Aliases: `champion` on version 1 (the model in production before the experiment), `challenger`
on version 3. The router's promotion moves `champion` (modelsplit.yaml: write_aliases).

Run twice, it trains nothing the second time: versions 1-3 are there (tagged by this script), so
it prints them and leaves them and their aliases alone (a promotion's `champion` stays where the
router moved it). `--retrain` trains again and registers new versions (4, 5, 6…), which the
walkthrough's config does not point at. A `churn` model this script did not make is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd

MODEL_NAME = "churn"
EXPERIMENT = "churn-training"
SEED = 42
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "month_to_month", "num_products"]
TAG = "modelsplit.example"  # on each version: its spec's name, so a second run knows its own

# The three versions, in registration order: name, hyperparameters, what they are meant to show.
SPECS: list[dict[str, Any]] = [
    {"name": "cautious-l1", "params": {"C": 0.01, "l1_ratio": 1.0, "solver": "liblinear", "class_weight": None},
     "description": "Strong L1 regularisation, unweighted classes: high accuracy, flags few churners."},
    {"name": "balanced-l2", "params": {"C": 1.0, "l1_ratio": 0.0, "solver": "lbfgs", "class_weight": "balanced"},
     "description": "Light L2 regularisation, balanced class weights: flags most churners."},
    {"name": "balanced-elasticnet", "params": {"C": 0.05, "l1_ratio": 0.5, "solver": "saga", "class_weight": "balanced"},
     "description": "Elastic net, balanced class weights: the challenger, mirrored as a shadow."},
]


def generate_customers(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n synthetic customers (the model's input columns)."""
    return pd.DataFrame({
        "tenure_months": rng.integers(1, 73, n),
        "monthly_charges": np.round(rng.uniform(20, 120, n), 2),
        "support_calls": rng.poisson(1.5, n),
        "month_to_month": (rng.random(n) < 0.5).astype(np.int64),
        "num_products": rng.integers(1, 5, n),
    })[FEATURES]


def churn_probability(x: pd.DataFrame) -> np.ndarray:
    """The true probability that each customer churns (unknown to the models)."""
    logit = (-1.2 - 0.04 * (x["tenure_months"] - 24) + 0.025 * (x["monthly_charges"] - 70)
             + 0.5 * (x["support_calls"] - 1.5) + 1.1 * x["month_to_month"] - 0.35 * (x["num_products"] - 1))
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=float)))


def dataset(n: int = 6000, seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = generate_customers(n, rng)
    y = (rng.random(n) < churn_probability(x)).astype(np.int64)
    return x, y


def make_model(params: dict[str, Any]):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    return Pipeline([("scale", StandardScaler()),
                     ("logreg", LogisticRegression(max_iter=5000, random_state=SEED, **params))])


def our_versions(client) -> dict[str, Any]:
    """This script's registered versions of `churn`, by spec name (the oldest of each); exits when
    `churn` holds versions it did not make."""
    from mlflow.exceptions import MlflowException
    try:
        client.get_registered_model(MODEL_NAME)
    except MlflowException:
        return {}
    versions = sorted(client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: int(v.version))
    foreign = [v.version for v in versions if TAG not in (v.tags or {})]
    if foreign:
        sys.exit(f"registered model '{MODEL_NAME}' has versions this script did not make ({', '.join(foreign)}): "
                 "use a fresh tracking server (or delete that model) for the walkthrough")
    found: dict[str, Any] = {}
    for v in versions:
        found.setdefault(v.tags[TAG], v)
    return found


def train(tracking_uri: str, retrain: bool = False, quiet: bool = False) -> dict[str, str]:
    """Trains and registers what is missing; returns spec name -> version."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.metrics import accuracy_score, recall_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    existing = our_versions(client)
    if existing and not retrain:
        say(f"'{MODEL_NAME}' already has versions {', '.join(v.version for v in existing.values())} from an earlier run: "
            "nothing to train (--retrain registers new versions)")
        for name, v in existing.items():
            aliases = client.get_model_version(MODEL_NAME, v.version).aliases  # search leaves them out
            say(f"  version {v.version}  {name:<20} aliases: {', '.join(aliases) or '-'}")
        return {name: v.version for name, v in existing.items()}

    x, y = dataset()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    mlflow.set_experiment(EXPERIMENT)
    say(f"data: {len(x)} synthetic customers (seed {SEED}), churn rate {y.mean():.1%}; "
        f"hold-out {len(x_test)}; experiment '{EXPERIMENT}' at {tracking_uri}")
    registered: dict[str, str] = {}
    for spec in SPECS:
        model = make_model(spec["params"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's FutureWarnings and MLflow's notes are noise here
            model.fit(x_train, y_train)
        p_churn = model.predict_proba(x_test)[:, 1]
        metrics = {
            "accuracy": float(accuracy_score(y_test, p_churn >= 0.5)),
            "roc_auc": float(roc_auc_score(y_test, p_churn)),
            "recall": float(recall_score(y_test, p_churn >= 0.5)),       # share of churners flagged
            "flagged_rate": float(np.mean(p_churn >= 0.5)),               # share of customers flagged
        }
        with mlflow.start_run(run_name=spec["name"]) as run:
            mlflow.log_params({**{k: ("none" if v is None else v) for k, v in spec["params"].items()},
                               "features": ",".join(FEATURES), "seed": SEED,
                               "n_train": len(x_train), "n_test": len(x_test)})
            mlflow.log_metrics(metrics)
            mlflow.set_tag("mlflow.note.content", spec["description"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = mlflow.sklearn.log_model(
                    model, name="model", registered_model_name=MODEL_NAME,
                    input_example=x_train.head(3), pyfunc_predict_fn="predict_proba",
                )
        version = str(info.registered_model_version)
        client.set_model_version_tag(MODEL_NAME, version, TAG, spec["name"])
        client.update_model_version(MODEL_NAME, version, description=spec["description"])
        registered[spec["name"]] = version
        say(f"  version {version}  {spec['name']:<20} accuracy {metrics['accuracy']:.3f}  ROC AUC {metrics['roc_auc']:.3f}  "
            f"recall {metrics['recall']:.3f}  (run {run.info.run_id})")

    if not existing:  # the first registration: the walkthrough's starting point
        names = [s["name"] for s in SPECS]
        client.set_registered_model_alias(MODEL_NAME, "champion", registered[names[0]])
        client.set_registered_model_alias(MODEL_NAME, "challenger", registered[names[2]])
        say(f"aliases: champion -> version {registered[names[0]]}, challenger -> version {registered[names[2]]}")
    else:
        say("new versions registered; aliases left as they were (the walkthrough's config points at versions 1 and 2)")
    return registered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                    help="the MLflow tracking server (default: $MLFLOW_TRACKING_URI)")
    ap.add_argument("--retrain", action="store_true", help="train and register new versions even if 1-3 exist")
    args = ap.parse_args()
    if not args.tracking_uri:
        ap.error("give --tracking-uri or set MLFLOW_TRACKING_URI (e.g. http://127.0.0.1:5050)")
    train(args.tracking_uri, retrain=args.retrain)


if __name__ == "__main__":
    main()
