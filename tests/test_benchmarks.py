"""The benchmark scripts run (smoke size) and print figures, so they cannot rot. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
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


def load_script(script: str):
    """A benchmark script as a module, to call its main(argv) in-process (no second interpreter and imports)."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quality_calls_smoke_scores_every_setting_counts_calls_and_resumes(tmp_path, capsys):
    sweep = load_script("quality_calls.py")
    assert sweep.main(["--smoke", "--out", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "sweep" / "results.json").read_text())
    rows = {row["setting"]: row for row in report["table"]}
    expected = {f"{s}-{n}-g0-1" for s in ("ddim", "unipc", "dpm") for n in (1, 2)} | {"ddim-2-g0-0.5", "ddim-2-g0-0"}
    assert set(rows) == expected and len(report["runs"]) == 2 * len(expected)  # two seeds each
    for row in rows.values():
        assert row["calls_per_image"] == 3 * row["steps"]  # 3 stages, one call per step, guidance batched
        assert 0 < row["seconds_per_image"] and row["seeds"] == 2
        assert all(math.isfinite(row[name]) for name in ("ssim_pidm", "ssim_pidm_spread", "l1", "l1_spread"))
        assert row["fid_tf"] is None  # smoke skips the 2048 x 2048 matrix square root
    assert rows["ddim-2-g0-1"]["rows_per_image"] == 12  # [uncond; cond] on both steps of 3 stages
    assert rows["ddim-2-g0-0.5"]["rows_per_image"] == 9  # the second step of each stage unguided
    assert rows["ddim-2-g0-0"]["rows_per_image"] == 6
    assert "| scheduler | steps | guidance interval | calls/image | rows/image |" in out
    assert (tmp_path / "sweep" / "quality_calls.md").read_text() in out
    assert (tmp_path / "sweep" / "quality_calls.png").stat().st_size > 10_000
    assert sweep.main(["--smoke", "--out", str(tmp_path / "sweep")]) == 0  # resumed: nothing left to run
    assert "0 runs to do, 16 already in" in capsys.readouterr().out
