"""Shared test setup: offline hubs, few CPU threads, the test photos and the vendored reference data.

Nothing here reads outside the clone: the photos come from installed dependencies (`photos.py`) and the
authors' reference fixtures are vendored in `tests/data/authors_reference`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    """Real photos (people and not) and pose renders, written once per run from what the dependencies ship:
    see `photos.py` for which file is what."""
    from photos import make_samples

    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(2)
    yield


def pytest_sessionfinish(session, exitstatus):
    """On CI (`CI=true`, as `.ci/run` runs) a skipped test fails the run: every test must run there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI", "").lower() in ("1", "true") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped (see the SKIPPED lines); nothing may be skipped on CI",
                            red=True)
        session.exitstatus = 1
