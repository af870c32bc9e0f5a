"""Shared test setup: offline hubs, few CPU threads, paths to the real samples in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PCDMS_SHARED", REPO_ROOT.parent / "shared"))
SAMPLES = SHARED / "samples" / "deepfashion"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Real DeepFashion photos and pose renders; read in place, never copied into the repo."""
    assert SAMPLES.is_dir(), f"expected the shared samples at {SAMPLES} (set PCDMS_SHARED)"
    return SAMPLES


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(2)
    yield
