"""`pcdms augment` (re-ID data augmentation, paper Sec. 4.3) and the Table 2 benchmark at smoke size."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcdms.jobs.augment import AugmentSettings, make_plan, select_subset
from pcdms.cli import main
from pcdms.data.market import SYNTHETIC_SEQUENCE, market_name, parse_market_name, write_market_synth

REPO = Path(__file__).resolve().parents[1]
TORCHREID_MARKET = re.compile(r"([-\d]+)_c(\d)")  # torchreid's Market1501 reader


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("market")
    write_market_synth(root, train_ids=4, test_ids=2, images_per_id=3, cameras=3, query_per_id=1, seed=7)
    return root


def _pids(counts: list[int]) -> dict[str, int]:
    return {market_name(pid + 1, 1 + k % 6, 1, k): pid + 1 for pid, n in enumerate(counts) for k in range(n)}


@pytest.mark.parametrize("seed", [0, 3])
def test_every_person_is_kept_at_every_fraction_and_the_sizes_are_the_fraction(seed):
    pids = _pids([1, 2, 7, 12, 3, 25])  # 50 images of 6 people, one with a single image
    previous: set[str] = set()
    for fraction in (0.05, 0.2, 0.4, 0.6, 0.8, 1.0):
        kept = select_subset(pids, fraction, seed)
        assert {pids[n] for n in kept} == set(pids.values())
        assert len(kept) == max(6, round(fraction * 50)) and len(set(kept)) == len(kept)
        assert previous <= set(kept)  # nested: a smaller fraction's images stay kept
        previous = set(kept)
    assert select_subset(pids, 0.4, seed) == select_subset(pids, 0.4, seed)


def test_market_names_parse_back_to_person_and_camera():
    name = market_name(42, 5, SYNTHETIC_SEQUENCE, 1234, 7)
    assert name == "0042_c5s9_001234_07.jpg"
    pid, camera = map(int, TORCHREID_MARKET.search(name).groups())
    assert (pid, camera) == (42, 5)
    parsed = parse_market_name(name)
    assert parsed.synthetic and (parsed.pid, parsed.camera, parsed.frame, parsed.box) == (42, 5, 1234, 7)
    assert not parse_market_name("0002_c1s1_000451_03.jpg").synthetic
    assert parse_market_name("person.jpg") is None


def test_a_smaller_fraction_plans_a_subset_of_a_larger_ones_images(market):
    def plan(fraction):
        settings = AugmentSettings(str(market), fraction, 2, 0, "m", pose_fraction=0.5)
        return {(s.name, s.source, s.target) for s in make_plan(market, settings)[0].synthetic}

    small, large = plan(0.5), plan(1.0)
    assert small and small < large
    for name, source, target in large:
        assert parse_market_name(name).pid == parse_market_name(source).pid != parse_market_name(target).pid


def _augment(data: Path, out: Path, *extra: str) -> list[str]:
    return ["augment", "--data", str(data), "--out", str(out), "--steps", "1", "--device", "cpu", "--no-progress",
            "--batch-size", "4", *extra]


def test_augment_writes_a_market_folder_and_a_resumed_run_makes_only_missing_images(market, tmp_path, capsys):
    out = tmp_path / "aug"
    assert main(_augment(market, out, "--fraction", "0.5")) == 0
    record = json.loads((out / "augment.json").read_text())
    train = sorted(p.name for p in (out / "bounding_box_train").iterdir())
    generated = {s["name"] for s in record["synthetic"]}
    assert len(record["kept"]) == 6 and len(generated) == 6  # 12 training images of 4 people, half kept
    assert set(train) == set(record["kept"]) | generated
    for s in record["synthetic"]:
        pid, camera = map(int, TORCHREID_MARKET.search(s["name"]).groups())
        source = parse_market_name(s["source"])
        assert (pid, camera) == (source.pid, source.camera) and parse_market_name(s["name"]).synthetic
    assert sorted(p.name for p in (out / "query").iterdir()) == sorted(p.name for p in (market / "query").iterdir())

    names = sorted(generated)
    (out / "bounding_box_train" / names[0]).unlink()  # lost both copies: made again
    (out / "generated" / f"{Path(names[0]).stem}.png").unlink()
    (out / "bounding_box_train" / names[1]).unlink()  # lost the JPEG only: published again from the PNG
    kept_files = {n: (out / "bounding_box_train" / n).stat().st_mtime_ns for n in names[2:]}
    capsys.readouterr()
    assert main(_augment(market, out, "--fraction", "0.5")) == 0
    assert "1 written, 5 already there, 0 failed" in capsys.readouterr().out
    assert set(p.name for p in (out / "bounding_box_train").iterdir()) == set(train)
    assert {n: (out / "bounding_box_train" / n).stat().st_mtime_ns for n in names[2:]} == kept_files

    assert main(_augment(market, out, "--fraction", "1")) == 2  # other settings: refused, nothing mixed
    assert "holds an augment run with other settings (fraction 0.5 -> 1.0)" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--fraction", "0"], "--fraction: expected a finite number in (0, 1], got '0'"),
    (["--fraction", "1.5"], "--fraction: expected a finite number in (0, 1], got '1.5'"),
    (["--per-image", "0"], "--per-image"),
])
def test_out_of_range_arguments_are_one_line_errors(market, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        main(_augment(market, tmp_path / "o", *args))
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _copy_train(market: Path, root: Path) -> Path:
    (root / "bounding_box_train").mkdir(parents=True)
    for path in (market / "bounding_box_train").iterdir():
        (root / "bounding_box_train" / path.name).write_bytes(path.read_bytes())
    return root


def test_bad_inputs_are_one_line_errors_naming_the_file_or_argument(market, tmp_path, capsys):
    def error(*args: str) -> str:
        capsys.readouterr()
        assert main(list(args)) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        return err

    assert "--data: no folder" in error(*_augment(tmp_path / "missing", tmp_path / "o1"))
    assert "no folder" in error(*_augment(tmp_path, tmp_path / "o2"))  # no bounding_box_train/
    bad = _copy_train(market, tmp_path / "bad")
    (bad / "bounding_box_train" / "holiday.jpg").write_bytes(b"x")
    assert "holiday.jpg: not a Market-1501 name" in error(*_augment(bad, tmp_path / "o3"))
    assert "not into --data" in error(*_augment(market, market / "bounding_box_train" / "x"))
    rows = (market / "market-annotation-train.csv").read_text().splitlines()
    annotation = tmp_path / "market-annotation-train.csv"
    annotation.write_text("\n".join(rows[:2] + ["0001_c1s1_000000_00.jpg:[1,2]:[3]:128:64"] + rows[2:]) + "\n")
    message = error(*_augment(market, tmp_path / "o4", "--annotation", str(annotation)))
    assert f"{annotation}:line 3:" in message
    assert "--pose-fraction 0.8 is above --fraction 0.5" in error(
        *_augment(market, tmp_path / "o5", "--fraction", "0.5", "--pose-fraction", "0.8"))
    assert "--model" in error(*_augment(market, tmp_path / "o6", "--model", str(tmp_path)))
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 7))


def test_dry_run_counts_and_writes_nothing(market, tmp_path, capsys):
    assert main(["augment", "--data", str(market), "--out", str(tmp_path / "d"), "--fraction", "0.5",
                 "--per-image", "2", "--dry-run"]) == 0
    assert "6 of the training images kept, 12 to generate" in capsys.readouterr().out
    assert not (tmp_path / "d").exists()


def test_images_without_a_pose_are_kept_but_generate_nothing(market, tmp_path):
    rows = (market / "market-annotation-train.csv").read_text().splitlines()
    missing = "[" + ",".join(["-1"] * 18) + "]"
    first = rows[1].split(":")[0]
    annotation = tmp_path / "a.csv"
    annotation.write_text("\n".join([rows[0], f"{first}:{missing}:{missing}:128:64", *rows[2:]]) + "\n")
    plan, _ = make_plan(market, AugmentSettings(str(market), 1.0, 1, 0, "m"), annotation)
    assert first in plan.kept and plan.no_pose == [first]
    assert first not in {s.source for s in plan.synthetic} | {s.target for s in plan.synthetic}
    assert len(plan.synthetic) == 11


def _benchmark():
    spec = importlib.util.spec_from_file_location("reid_table2", REPO / "benchmarks" / "reid_table2.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_market_eval_leaves_out_the_query_camera_and_scores_rank1_and_map():
    bench = _benchmark()
    # gallery: person 1 in camera 1 (same camera as the query: left out), person 2, person 1 in camera 2
    distance = np.array([[0.0, 0.5, 0.7], [0.9, 0.1, 0.2]])
    rank1, mean_ap = bench.market_eval(distance, np.array([1, 2]), np.array([1, 2, 1]), np.array([1, 1]),
                                       np.array([1, 1, 2]))
    # query 1: person 2 ranks first, its match second (AP 1/2); query 2: its match is in camera 1 too, left out
    assert rank1 == 0.0 and mean_ap == 0.5


def test_table2_benchmark_smoke_runs_end_to_end(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "reid_table2.py"), "--smoke", "--seeds", "0",
                           "--work", str(tmp_path), "--docs", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == 10 and all(0 <= r["rank1"] <= 1 and 0 < r["mAP"] <= 1 for r in rows)
    assert all(r["generated_images"] == r["real_images"] for r in rows if r["variant"] == "real+PCDMs")
    assert (tmp_path / "reid_table2.png").stat().st_size > 0
    assert "real+PCDMs: Rank-1" in (tmp_path / "reid_table2.md").read_text()
