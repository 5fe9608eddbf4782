"""The walkthrough's stack, in one command: an MLflow tracking server, the three trained and
registered versions of `churn`, each served by `mlflow models serve`, and the router in front.

    python up.py            # starts everything, prints where to look; Ctrl-C stops everything
    python up.py --fresh    # the same from nothing: deletes .run/ (MLflow store, records, decisions) first

Ports, the tracking server's address and which version each model serves come from
modelsplit.yaml (the router's config). State lives in .run/ beside this file: the MLflow store
(SQLite and artifacts) in .run/mlflow, the router's records and decision state in .run/router,
every process's output in .run/logs. A second `python up.py` keeps it: the training runs and
versions are there (train.py trains nothing), and the router resumes its rollout where it was.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stack import REPO, ROUTER_CLI, Stack, StackError, port_in_use  # noqa: E402


def model_uri(ref: dict) -> str:
    """`models:/churn/1` for `{model: churn, version: 1}`, `models:/churn@challenger` for an alias."""
    if "version" in ref:
        return f"models:/{ref['model']}/{ref['version']}"
    return f"models:/{ref['model']}@{ref['alias']}"


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    import yaml
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(HERE / "modelsplit.yaml"), help="the router's config (default: modelsplit.yaml)")
    ap.add_argument("--fresh", action="store_true", help="delete .run/ first: a new MLflow store, no records, no rollout state")
    args = ap.parse_args()

    config = Path(args.config).resolve()
    cfg = yaml.safe_load(config.read_text())
    tracking_uri = cfg["mlflow"]["tracking_uri"]
    tracking = urllib.parse.urlsplit(tracking_uri)
    models = {name: (urllib.parse.urlsplit(m["url"]).port, model_uri(m["mlflow"])) for name, m in cfg["models"].items()}
    router_url = f"http://{cfg['listen']['host']}:{cfg['listen']['port']}"
    admin_url = f"http://{cfg['admin']['host']}:{cfg['admin']['port']}"
    if not ROUTER_CLI.exists():
        sys.exit(f"the router is not built: run `npm ci && npm run build` in {REPO} first")
    busy = [p for p in [tracking.port, *(port for port, _ in models.values()), cfg["listen"]["port"], cfg["admin"]["port"]]
            if port_in_use(p)]
    if busy:
        sys.exit(f"ports in use on 127.0.0.1: {', '.join(map(str, busy))} (another `python up.py`? "
                 "`npm run demo` uses 8080 and 9464). Stop it, or edit the ports in modelsplit.yaml.")

    workdir = HERE / ".run"
    if args.fresh and workdir.exists():
        print(f"--fresh: deleting {workdir}")
        shutil.rmtree(workdir)
    stack = Stack(workdir)
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops everything, as Ctrl-C does
    t0 = time.monotonic()
    try:
        stack.mlflow_server(tracking.port)
        print(f"  ready after {time.monotonic() - t0:.0f} s; training and registering (train.py)", flush=True)
        from train import train
        train(tracking_uri)
        procs = [(stack.serve_model(name, uri, port, tracking_uri), port) for name, (port, uri) in models.items()]
        for p, port in procs:
            Stack.wait_model(p, port)
        stack.router(config, admin_url, log_level="warn")
        route = cfg["routes"][0]
        print(f"""
everything is up after {time.monotonic() - t0:.0f} s (output of each process in {workdir / 'logs'}):
  MLflow UI          {tracking_uri}   (experiments churn-training and {cfg['mlflow'].get('experiment', 'modelsplit-online')}, model churn)
  router             {router_url}{route['path']}/invocations
  router console     {admin_url}/
  models             {', '.join(f'{n} {uri} on :{port}' for n, (port, uri) in models.items())}

try:
  curl -s {router_url}{route['path']}/invocations -H 'content-type: application/json' -H 'x-user-id: alice' \\
    -d '{{"dataframe_records": [{{"tenure_months": 8, "monthly_charges": 79.5, "support_calls": 3, "month_to_month": 1, "num_products": 1}}]}}'
  python traffic.py          # simulated customers and their outcomes until churn-v2 is promoted (about 2 minutes)

Ctrl-C here stops everything.""", flush=True)
        while True:
            for p in stack.procs:
                if not p.running():
                    raise StackError(f"{p.name} exited with {p.popen.returncode}\n{p.log_tail()}")
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    except StackError as e:
        print(f"\n{e}", file=sys.stderr, flush=True)
        stack.stop()
        sys.exit(1)
    finally:
        stack.stop()
    print("stopped; the state is kept in .run/ (`python up.py --fresh` starts from nothing)")


if __name__ == "__main__":
    main()
