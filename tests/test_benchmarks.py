"""The benchmark scripts run (smoke size) and print figures, so they cannot rot. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_inference_speed_counts_every_stage_network_call_of_the_demo_model():
    out = run("inference_speed.py", "--steps", "2", "--images", "2", "--device", "cpu")
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:6]}
    # 2 steps per stage, guidance batched into one call; stage 3 at strength 0.1 runs round(0.2) -> at least 1
    assert float(rows["prior"][1]) == 2 and float(rows["inpaint"][1]) == 2 and float(rows["refine"][1]) >= 1
    assert all(float(seconds) > 0 for seconds, _ in rows.values())


def test_sampling_calls_reports_each_stage(tmp_path):
    run("sampling_calls.py", "--presets", "authors-tiny", "--steps", "2", "--repeat", "1",
        "--json", str(tmp_path / "calls.json"))
    stages = json.loads((tmp_path / "calls.json").read_text())["stages"]
    assert set(stages) == {"authors-tiny/prior", "authors-tiny/inpaint", "authors-tiny/refine"}
    # the UNet once per step; the pose embedding once; the token projections (DINOv2 MLP, global token) twice
    assert stages["authors-tiny/inpaint"]["module_calls"] == 2 + 1 + 2 * 2


def test_train_speed_reports_every_figure_per_stage_on_real_photos(tmp_path, samples_dir):
    out = run("train_speed.py", "--preset", "tiny", "--steps", "5", "--stages", "refine",
              "--photos", str(samples_dir), "--photo-size", "128x88", "--peak-tflops", "0.5",
              "--json", str(tmp_path / "speed.json"))
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [r["stage"] for r in rows] == ["refine"]
    for row in rows:
        for key in ("steps_per_s", "images_per_s", "peak_memory_bytes", "train_flops_per_step", "achieved_tflops",
                    "mfu"):
            assert math.isfinite(row[key]) and row[key] > 0, key
        assert 0 <= row["data_wait_share"] <= 1
        assert row["images_per_s"] == pytest.approx(row["steps_per_s"] * 4)  # the tiny preset's batch
        assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 0.5)
    assert rows[0]["encoder_flops_per_step"] > 0  # stage 3 encodes the source with DINOv2
    for header in ("steps/s", "images/s", "data wait", "peak MiB", "train GFLOP", "enc. GFLOP", "MFU"):
        assert header in out
    assert "%" in out.splitlines()[2] and "n/a" not in out.splitlines()[2]


def test_train_speed_peaks_by_gpu_name():
    spec = importlib.util.spec_from_file_location("train_speed", BENCHMARKS / "train_speed.py")
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)
    assert train_speed.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert train_speed.peak_tflops("NVIDIA H100 PCIe", "fp16") == 756.0
    assert train_speed.peak_tflops("NVIDIA H200", "no") == 66.9
    assert train_speed.peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert train_speed.peak_tflops("NVIDIA GeForce RTX 4090", "no") == 82.6
    assert train_speed.peak_tflops("Some Other GPU", "bf16") is None


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


def test_quality_calls_default_is_the_cheapest_setting_within_seed_noise_on_both_metrics():
    sweep = load_script("quality_calls.py")

    def row(setting, rows, ssim, ssim_spread, fid, fid_spread, calls=60):
        return {"setting": setting, "rows_per_image": rows, "calls_per_image": calls, "ssim_pidm": ssim,
                "ssim_pidm_spread": ssim_spread, "fid_tf": fid, "fid_tf_spread": fid_spread}

    rows = [row("ddim-20", 120, 0.748, 0.001, 176.7, 2.4),
            row("ddim-5", 30, 0.744, 0.001, 177.0, 1.0, calls=15),  # ssim 0.004 worse, noise 0.002: out
            row("unipc-5", 30, 0.747, 0.0005, 181.0, 0.5, calls=15),  # fid 4.3 worse, noise 4.8: in
            row("ddim-10", 60, 0.749, 0.001, 170.0, 1.0, calls=30),  # better on both: in
            row("ddim-20-g0-0", 60, 0.760, 0.001, 190.0, 1.0)]  # fid 13.3 worse: out
    assert sweep.mark_within_noise(rows, "ddim-20")["setting"] == "unipc-5"
    assert [r["within_noise"] for r in rows] == [True, False, True, True, False]
    rows[2]["fid_tf"] = 181.6  # 4.9 worse than the default, beyond both spreads
    assert sweep.mark_within_noise(rows, "ddim-20")["setting"] == "ddim-10"
    assert sweep.mark_within_noise(rows, "dpm-20") is None  # no reference measured: nothing chosen
    assert all(r["within_noise"] is None for r in rows)


def test_train_memory_reports_each_phase_with_and_without_checkpointing(tmp_path):
    out = run("train_memory.py", "--preset", "tiny", "--stages", "inpaint", "--optimizer",
              "--json", str(tmp_path / "memory.json"))
    rows = json.loads((tmp_path / "memory.json").read_text())["rows"]
    assert [(r["stage"], r["checkpointing"]) for r in rows] == [("inpaint", "off"), ("inpaint", "on")]
    for row in rows:
        assert row["trained_params_m"] > 0 and row["resident_mib"] > 0 and row["built_mib"] >= 0
        for phase in ("forward_mib", "backward_mib", "optimizer_mib"):
            assert math.isfinite(row[phase]) and row[phase] >= 0, phase
        assert row["peak_mib"] == pytest.approx(
            row["resident_mib"] + max(row["forward_mib"], row["backward_mib"], row["optimizer_mib"]))
        assert row["image"] == [64, 48]  # the tiny preset's size, not a stand-in
    assert rows[0]["trained_params_m"] == rows[1]["trained_params_m"]
    for header in ("resident", "forward", "backward", "optimizer", "peak"):
        assert header in out


def test_gpu_benchmarks_script_runs_every_step_at_smoke_size(tmp_path):
    # the one command that makes every GPU figure; SMOKE=1 runs its steps on the CPU at tiny size
    script = BENCHMARKS.parent / "scripts" / "gpu_benchmarks.sh"
    done = subprocess.run(["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SMOKE": "1", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all figures in" in done.stdout
    for step in ("paper_scale-smoke", "train_speed", "train_memory"):
        assert json.loads((tmp_path / "out" / f"{step}.json").read_text())["rows"], step
        assert (tmp_path / "out" / f"{step}.txt").read_text().strip(), step
    assert "torch" in (tmp_path / "out" / "gpu.txt").read_text()


def _report(folder: Path, ssim: float, l1: float, garment: float | None, baselines: tuple[float, float] | None):
    """A `pcdms evaluate` report.json holding what ablation_table.py reads (fid_tf skipped: None)."""
    folder.mkdir(parents=True)
    single = {"images": 120, "ssim_pidm": ssim, "l1": l1, "fid_tf": None, "garment_colour_error": garment}
    report = {"results": {"single_sample": single}}
    if baselines:
        report["garment_baselines"] = {"source_photo": baselines[0], "other_identity": baselines[1]}
    (folder / "report.json").write_text(json.dumps(report))


def test_ablation_table_shows_garment_error_and_its_baselines_and_checks_issue_31(tmp_path, capsys):
    table = load_script("ablation_table.py")
    values = {  # stages: per seed (ssim, l1, garment)
        "B1": [(0.650, 0.110, 11.0), (0.640, 0.100, 9.0)],
        "B2": [(0.660, 0.100, 12.0), (0.650, 0.100, 10.0)],  # garment +1.0 over B1, B1's spread is 2.0
        "full": [(0.670, 0.090, 11.5), (0.660, 0.095, 8.5)],
    }
    for stages, per_seed in values.items():
        for seed, baselines, (ssim, l1, garment) in zip((5, 6), ((8.0, 40.0), (5.0, 35.0)), per_seed, strict=True):
            _report(tmp_path / f"seed{seed}" / f"{stages}-metrics", ssim, l1, garment, baselines)
    table.main([str(tmp_path), "--checks"])
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "garment colour error" in header and "FID" not in header  # no report has fid_tf
    assert "| B2 | 0.655 (0.660 / 0.650) | 0.1000 (0.1000 / 0.1000) | 11.0 (12.0 / 10.0) |" in out
    assert "| B3 |" not in out
    assert "baselines (seed5 / seed6): source photo 8.0 / 5.0, another identity 40.0 / 35.0" in out
    lines = {line[6:]: line[:4] for line in out.splitlines() if line[:4] in ("PASS", "FAIL")}
    assert lines["seed5: full garment colour error 11.5 = 1.44 x the source photo's 8.0 (at most 1.5)"] == "PASS"
    assert lines["seed6: full garment colour error 8.5 = 1.70 x the source photo's 5.0 (at most 1.5)"] == "FAIL"
    assert lines["full > B2 on ssim_pidm: 0.665 vs 0.655"] == "PASS"
    assert lines["full < B2 on garment_colour_error: 10.0 vs 11.0"] == "PASS"
    assert lines["B2 no worse than B1 + spread on garment_colour_error: B2 11.0, B1 10.0, spread 2.0"] == "PASS"
    assert lines["B2 no worse than B1 + spread on ssim_pidm: B2 0.655, B1 0.645, spread 0.010"] == "PASS"
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["rows"]["full"]["garment_colour_error"] == [11.5, 8.5] and saved["seeds"] == ["seed5", "seed6"]


def test_ablation_table_flags_a_prior_that_costs_more_than_the_seed_spread(tmp_path, capsys):
    table = load_script("ablation_table.py")
    for seed in (0, 1):
        _report(tmp_path / f"seed{seed}" / "B1-metrics", 0.70, 0.10, 10.0 + seed * 0.5, None)
        _report(tmp_path / f"seed{seed}" / "B2-metrics", 0.70, 0.10, 12.0, None)
    table.main([str(tmp_path), "--checks"])
    out = capsys.readouterr().out
    assert "FAIL  B2 no worse than B1 + spread on garment_colour_error: B2 12.0, B1 10.2, spread 0.5" in out
    assert "baselines" not in out and "source photo" not in out  # scored without --garment-baselines


def test_ablation_table_without_reports_says_which_script_makes_them(tmp_path):
    table = load_script("ablation_table.py")
    with pytest.raises(SystemExit, match="eval_transfer.sh"):
        table.main([str(tmp_path)])


def test_ablation_table_checks_only_rows_scored_for_every_seed(tmp_path, capsys):
    table = load_script("ablation_table.py")
    for seed in (5, 6):
        _report(tmp_path / f"seed{seed}" / "B2-metrics", 0.70, 0.10, 12.0, (8.0, 40.0))
    _report(tmp_path / "seed5" / "full-metrics", 0.71, 0.09, 11.0, (8.0, 40.0))  # seed 6 still generating
    table.main([str(tmp_path), "--checks"])
    out = capsys.readouterr().out
    assert "| full | 0.710 (0.710) |" in out  # shown as far as it goes
    assert "PASS" not in out and "FAIL" not in out  # but not compared with rows of two seeds
