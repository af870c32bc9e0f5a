"""The benchmark scripts run (smoke size) and print figures, so they cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, script, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_paper_scale_smoke_reports_every_configuration(tmp_path):
    out = run("paper_scale.py", "--smoke", "--configs", "fp32", "fp32+channels_last", "--batches", "1",
              "--json", str(tmp_path / "report.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["config"] for r in report["rows"]] == ["fp32", "fp32+channels_last"]
    for row in report["rows"]:
        assert row["seconds_per_image"] > 0 and row["peak_memory_mb"] > 0
        assert row["network_calls_per_image"] == 3 * 2  # 3 stages x 2 steps, guidance batched into one call
        assert 0 <= row["outside_networks_share"] < 1
    assert report["rows"][1]["max_grey_levels_vs_fp32"] <= 1
    assert "s/image" in out and "fp32+channels_last" in out


def test_sampling_calls_reports_each_stage(tmp_path):
    run("sampling_calls.py", "--presets", "authors-tiny", "--steps", "2", "--repeat", "1",
        "--json", str(tmp_path / "calls.json"))
    stages = json.loads((tmp_path / "calls.json").read_text())["stages"]
    assert set(stages) == {"authors-tiny/prior", "authors-tiny/inpaint", "authors-tiny/refine"}
    # the UNet once per step; the pose embedding once; the token projections (DINOv2 MLP, global token) twice
    assert stages["authors-tiny/inpaint"]["module_calls"] == 2 + 1 + 2 * 2
