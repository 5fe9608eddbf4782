"""Fixtures: the built router command line, model servers, a router factory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional
import subprocess

import pytest

from support import CLI, REPO, COEFFICIENTS, ModelServer, Router, start_router


@pytest.fixture(scope="session")
def cli() -> Path:
    """The router's built command line; built with `npm run build` when dist/ is missing."""
    if not CLI.exists():
        subprocess.run(["npm", "run", "build"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    assert CLI.exists(), f"{CLI} missing after npm run build"
    return CLI


@pytest.fixture(scope="session")
def models() -> Iterator[dict[str, str]]:
    """Three churn model servers: name → base URL."""
    servers = {f"churn-{v}": ModelServer(v) for v in COEFFICIENTS}
    yield {name: s.url for name, s in servers.items()}
    for s in servers.values():
        s.close()


@pytest.fixture
def router_factory(cli: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """start_router bound to the built CLI and the test's temporary directory."""

    @contextmanager
    def factory(config_text: str, directory: Optional[Path] = None) -> Iterator[Router]:
        with start_router(cli, config_text, directory or tmp_path) as r:
            yield r

    return factory


@pytest.fixture(scope="session")
def traffic(cli: Path, models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Records made by a real router: prediction traffic on two routes (a shadow on one), outcomes
    fed back through modelsplit.Feedback, small rotating record files; the router is stopped
    (SIGTERM writes every record) and a crash's partial line is appended to the newest file."""
    from support import run_traffic

    return run_traffic(cli, models, tmp_path_factory.mktemp("traffic"))
