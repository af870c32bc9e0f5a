"""Bad input, as a hostile but fair user gives it (issue 13): every case ends in one clear line, never a traceback
and never a silently wrong result.

One table of command lines: each case gives the exit status, the words the message must contain (the
offending argument, key, file, row or joint, and what was expected) and, for warnings, the files that must
still be written. Run in-process through `pcdms.cli.main`. Then the range rules as tables: every numeric
config value has one, and each is enforced at parse time with a message naming key, value and range.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcdms import imageio
from pcdms.cli import main
from pcdms.config import load_config
from pcdms.data.synth import generate as synth
from pcdms.errors import ConfigError
from pcdms.validation import CONFIG_RANGES, numeric_values, rule_for
from pcdms.visualize import image_grid

DEMO = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo"
SOURCE = DEMO / "inputs" / "id00161_00_front-full.png"
SOURCE_POSE = DEMO / "inputs" / "id00161_00_front-full.json"
TARGET_POSE = DEMO / "inputs" / "id00161_02_three-quarter-full.json"
QUICK = ["--steps", "1", "--no-progress", "--device", "cpu"]


class World:
    """The files the cases point at, made once per module under one temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.model = DEMO / "model"
        self.data = root / "data"
        synth(self.data, train_identities=0, test_identities=1, poses_per_identity=3, height=64, width=44, seed=4)
        self._empty_split()
        self.no_joints = self._dataset_with_row("no-joints", lambda ys, xs: ([-1] * 18, [-1] * 18))
        self.nan_joints = self._dataset_with_row("nan-joints", lambda ys, xs: (["NaN"] * 2 + ys[2:], xs))
        self.a_file = root / "a-file"
        self.a_file.write_text("not a folder")
        self.unwritable = self._unwritable()
        self.truncated = self._truncated_model()
        self.poses = {name: self._pose(name, change) for name, change in POSE_CHANGES.items()}
        self.huge = root / "huge.jpg"
        Image.new("RGB", (3000, 4000), (200, 120, 90)).save(self.huge, quality=90)
        self.huge_pose = root / "huge.json"
        self._scaled_pose(SOURCE_POSE, self.huge_pose, 4000 / 64)
        self.pred, self.gt = self._predictions()
        self.clean_pair = self._pair_without_first_image()

    def _pair_without_first_image(self) -> str:
        """The output name of a test pair that does not involve the first annotated image (changed above)."""
        from pcdms.names import output_stem

        first = (self.data / "synth-annotation-test.csv").read_text().splitlines()[1].split(":")[0]
        pairs = [line.split(",") for line in (self.data / "synth-pairs-test.csv").read_text().splitlines()[1:]]
        return next(output_stem(a, b) for a, b in pairs if first not in (a, b))

    def _empty_split(self) -> None:
        (self.data / "synth-pairs-empty.csv").write_text("from,to\n")
        (self.data / "synth-annotation-empty.csv").write_text("name:keypoints_y:keypoints_x:height:width\n")

    def _dataset_with_row(self, name: str, change: Callable) -> Path:
        """A copy of the dataset whose first test annotation row is changed; returns its root."""
        root = self.root / name
        shutil.copytree(self.data, root)
        path = root / "synth-annotation-test.csv"
        lines = path.read_text().splitlines()
        image, ys, xs, h, w = lines[1].split(":")
        new_ys, new_xs = change(json.loads(ys), json.loads(xs))
        lines[1] = ":".join([image, f"[{', '.join(map(str, new_ys))}]", f"[{', '.join(map(str, new_xs))}]", h, w])
        path.write_text("\n".join(lines) + "\n")
        return root

    def _unwritable(self) -> Path:
        if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new folders to anyone
            return Path("/sys/pcdms-test-output")
        folder = self.root / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder / "out"

    def _truncated_model(self) -> Path:
        model = self.root / "truncated-model"
        shutil.copytree(self.model, model)
        weights = model / "inpaint" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return model

    def _pose(self, name: str, change: Callable[[np.ndarray], None]) -> Path:
        data = json.loads(TARGET_POSE.read_text())
        values = np.asarray(data["people"][0]["pose_keypoints_2d"], dtype=np.float64).reshape(18, 3)
        change(values)
        data["people"][0]["pose_keypoints_2d"] = [None if np.isnan(v) else float(v) for v in values.ravel()]
        path = self.root / f"pose-{name}.json"
        path.write_text(json.dumps(data).replace("null", "NaN"))
        return path

    @staticmethod
    def _scaled_pose(src: Path, dst: Path, scale: float) -> None:
        data = json.loads(src.read_text())
        values = np.asarray(data["people"][0]["pose_keypoints_2d"], dtype=np.float64).reshape(18, 3)
        values[:, :2] *= scale
        data["people"][0]["pose_keypoints_2d"] = values.ravel().tolist()
        data["canvas_height"], data["canvas_width"] = 4000, 3000
        dst.write_text(json.dumps(data))

    def _predictions(self) -> tuple[Path, Path]:
        gt, pred = self.root / "gt", self.root / "pred"
        gt.mkdir()
        pred.mkdir()
        rng = np.random.default_rng(0)
        for name in ("a", "b", "c"):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(gt / f"{name}.png")
        for src, tgt in (("a", "b"), ("b", "c")):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(pred / f"{src}_to_{tgt}.png")
        (pred / "c_to_a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # a prediction cut short
        (pred / "a_to_c.png").write_bytes(b"not an image at all")
        return pred, gt


def _nan(values: np.ndarray) -> None:
    values[:, :2] = np.nan


def _off_canvas(values: np.ndarray) -> None:
    values[:, 0] += 1000


def _zero_confidence(values: np.ndarray) -> None:
    values[:, 2] = 0


def _some_bad(values: np.ndarray) -> None:
    values[0, :2] = np.nan  # nose
    values[4, 0] = 500  # r_wrist, off the 64x44 canvas
    values[9, 2] = 0  # r_knee listed with confidence 0


POSE_CHANGES = {"nan": _nan, "off-canvas": _off_canvas, "confidence-0": _zero_confidence, "some-bad": _some_bad}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("bad-inputs"))


@dataclass
class Case:
    id: str
    argv: Callable[[World, Path], list[str]]  # (world, a fresh output folder) -> command line
    code: int
    says: Callable[[World], list[str]]  # each must appear in stderr (one-line error or warning)
    writes: Callable[[World, Path], list[Path]] = field(default=lambda w, out: [])  # must exist afterwards


def _generate_one(target_pose: str, *extra: str) -> Callable[[World, Path], list[str]]:
    return lambda w, out: ["generate", "--source", str(SOURCE), "--source-pose", str(SOURCE_POSE),
                           "--target-pose", str(w.poses.get(target_pose, TARGET_POSE)), "--out", str(out), *QUICK,
                           *extra]


def _generate_split(root: Callable[[World], Path], *extra: str) -> Callable[[World, Path], list[str]]:
    return lambda w, out: ["generate", "--dataset", str(root(w)), "--split", "test", "--out", str(out), *QUICK, *extra]


def _train(*overrides: str) -> Callable[[World, Path], list[str]]:
    return lambda w, out: ["train", "--stage", "prior", "--config", "tiny", "--out", str(out), "--no-progress",
                           f"data.root={w.data}", *overrides]


def _evaluate(workers: str) -> Callable[[World, Path], list[str]]:
    return lambda w, out: ["evaluate", "--pred", str(w.pred), "--gt", str(w.gt), "--size", "64x64", "--out", str(out),
                           "--workers", workers, "--device", "cpu", "--no-progress",
                           "--skip", "lpips", "--skip", "fid_tf", "--skip", "fid_gfla"]


CASES = [
    # ------------------------------------------------ ranges (config keys and arguments), at parse time
    Case("checkpoint_every=0", _train("train.checkpoint_every=0"), 2,
         lambda w: ["train.checkpoint_every", "0", "an integer >= 1"]),
    Case("max_steps=-1", _train("train.max_steps=-1"), 2, lambda w: ["train.max_steps", "-1", ">= 1"]),
    Case("--steps 0", _generate_one("", "--steps", "0"), 2, lambda w: ["--steps", "'0'", "in [1, 1000]"]),
    Case("--guidance nan", _generate_one("", "--guidance", "nan"), 2, lambda w: ["--guidance", "'nan'", "finite"]),
    Case("--guidance inf", _generate_one("", "--guidance", "inf"), 2, lambda w: ["--guidance", "'inf'", "finite"]),
    Case("--limit 0", _generate_split(lambda w: w.data, "--limit", "0"), 2, lambda w: ["--limit", "'0'", ">= 1"]),
    Case("--limit -1", _generate_split(lambda w: w.data, "--limit", "-1"), 2, lambda w: ["--limit", "'-1'", ">= 1"]),
    # ------------------------------------------------ output folders, devices, damaged weights
    Case("--out is a file", lambda w, out: _generate_one("")(w, w.a_file), 2,
         lambda w: ["--out", str(w.a_file), "is a file"]),
    Case("--out unwritable", lambda w, out: _generate_one("")(w, w.unwritable), 2,
         lambda w: ["--out", str(w.unwritable), "cannot write"]),
    Case("train --out is a file", lambda w, out: _train("train.max_steps=1")(w, w.a_file), 2,
         lambda w: ["--out", str(w.a_file), "is a file"]),
    Case("--device absent", lambda w, out: _generate_one("")(w, out)[:-2] + ["--device", "cuda:99"], 2,
         lambda w: ["--device cuda:99", "devices here: cpu"]),
    Case("truncated weights", lambda w, out: _generate_one("", "--model", str(w.truncated))(w, out), 2,
         lambda w: [str(w.truncated / "inpaint" / "model.safetensors"), "damaged or truncated", "copy"]),
    # ------------------------------------------------ poses
    Case("target pose all NaN", _generate_one("nan"), 2, lambda w: [str(w.poses["nan"]), "no usable joint", "NaN"]),
    Case("target pose all off canvas", _generate_one("off-canvas"), 2,
         lambda w: [str(w.poses["off-canvas"]), "no usable joint", "outside the 64x44 canvas"]),
    Case("target pose all confidence 0", _generate_one("confidence-0"), 2,
         lambda w: [str(w.poses["confidence-0"]), "no usable joint", "confidence 0"]),
    Case("target pose some bad joints", _generate_one("some-bad", "--name", "me"), 0,
         lambda w: ["warning:", str(w.poses["some-bad"]), "NaN/inf: nose", "confidence 0: r_knee",
                    "outside the 64x44 canvas: r_wrist"],
         lambda w, out: [out / "me.png", out / "me_grid.png"]),
    Case("dataset row all -1", _generate_split(lambda w: w.no_joints), 1,
         lambda w: ["synth-annotation-test.csv:line 2", "no usable keypoint"],
         lambda w, out: [out / f"{w.clean_pair}.png"]),
    Case("data check: row all -1", lambda w, out: ["data", "check", str(w.no_joints), "--split", "test",
                                                   "--no-decode"], 1,
         lambda w: ["1 problem(s)"]),  # the problems themselves go to stdout: the next test reads them
    Case("data check: split without pairs", lambda w, out: ["data", "check", str(w.data), "--split", "empty"], 1,
         lambda w: ["1 problem"]),
    # ------------------------------------------------ evaluate: every unreadable prediction listed, report written
    Case("evaluate unreadable, no workers", _evaluate("0"), 1,
         lambda w: ["a_to_c.png", "c_to_a.png", "INCOMPLETE"], lambda w, out: [out / "report.json"]),
    Case("evaluate unreadable, in loader workers", _evaluate("2"), 1,
         lambda w: ["a_to_c.png", "c_to_a.png", "INCOMPLETE"], lambda w, out: [out / "report.json"]),
    # ------------------------------------------------ huge photos: downscaled on read, said once, outputs openable
    Case("10-megapixel+ photo", lambda w, out: ["generate", "--source", str(w.huge), "--source-pose", str(w.huge_pose),
                                               "--target-pose", str(TARGET_POSE), "--name", "big", "--out", str(out),
                                               *QUICK], 0,
         lambda w: ["warning:", str(w.huge), "3000x4000", "downscaled on read to 2048 px"],
         lambda w, out: [out / "big.png", out / "big_grid.png"]),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `pcdms argv` (argparse's own errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_one_clear_line(case, world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(imageio, "_said_downscaled", False)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(case.argv(world, out), capsys)
    assert code == case.code, stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    for words in case.says(world):
        assert words in stderr, f"{words!r} not in: {stderr[-2000:]}"
    if case.code == 2:  # an error is one line (argparse adds its usage line above it)
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, stderr
    for path in case.writes(world, out):
        assert path.is_file(), f"{path.name} was not written"


def test_data_check_names_rows_without_joints_nan_joints_and_empty_splits(world, capsys):
    code, stdout, _ = run_cli(["data", "check", str(world.no_joints), "--no-decode"], capsys)
    assert code == 1 and "synth-annotation-test.csv:line 2: no usable keypoint" in stdout
    code, stdout, _ = run_cli(["data", "check", str(world.nan_joints), "--no-decode"], capsys)
    assert code == 1
    assert "synth-annotation-test.csv:line 2: keypoints that are not numbers (NaN/inf): nose, neck" in stdout
    code, stdout, _ = run_cli(["data", "check", str(world.data), "--split", "empty"], capsys)
    assert code == 1 and "split 'empty' has no usable pair" in stdout
    code, stdout, _ = run_cli(["data", "check", str(world.data), "--split", "test", "--no-decode"], capsys)
    assert code == 0 and stdout.startswith("ok")  # the untouched dataset stays clean


def test_incomplete_evaluation_report_lists_every_unreadable_prediction(world, tmp_path, capsys):
    code, _, _ = run_cli(_evaluate("0")(world, tmp_path), capsys)
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 1 and report["complete"] is False
    assert sorted(entry.split(":")[0] for entry in report["unreadable"]) == ["a_to_c.png", "c_to_a.png"]
    assert report["results"]["single_sample"]["images"] == 2  # the readable rest is scored


def test_huge_photo_outputs_open_with_default_limits(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(imageio, "_said_downscaled", False)
    code, _, stderr = run_cli(CASES[-1].argv(world, tmp_path), capsys)
    assert code == 0 and stderr.count("downscaled on read") == 1
    assert Image.open(tmp_path / "big.png").size == (1536, 2048)  # the working size, aspect kept
    for path in tmp_path.glob("*.png"):
        with Image.open(path) as image:
            assert image.width * image.height <= imageio.MAX_WRITE_PIXELS, path.name
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert max(imageio.load_image(world.huge).size) == imageio.MAX_SIDE
    assert not said  # said once per process: not again
    cell = Image.new("RGB", (8, 8))
    grid = image_grid([[cell] * 4] * 3, cell=(3000, 3000))  # 108 Mpx as asked: shrunk to stay openable
    assert grid.width * grid.height <= imageio.MAX_WRITE_PIXELS < 4 * 3 * 3000 * 3000


# ---------------------------------------------------------------- the rules as tables
def test_every_numeric_config_value_has_a_range():
    for preset in ("tiny", "deepfashion-256"):
        missing = [key for key, _ in numeric_values(load_config(preset)) if rule_for(key) is None]
        assert not missing, f"numeric config values without a range in validation.CONFIG_RANGES: {missing}"
    assert len(numeric_values(load_config("deepfashion-256"))) > 90 and len(CONFIG_RANGES) > 50


BAD_CONFIG = [
    ("train.checkpoint_every=0", "train.checkpoint_every", "an integer >= 1"),
    ("train.max_steps=-1", "train.max_steps", "an integer >= 1"),
    ("train.log_every=0", "train.log_every", "an integer >= 1"),
    ("train.learning_rate=0", "train.learning_rate", "a finite number > 0"),
    ("train.learning_rate=.nan", "train.learning_rate", "a finite number > 0"),
    ("train.batch_size=0", "train.batch_size", "an integer >= 1"),
    ("train.gradient_accumulation_steps=0", "train.gradient_accumulation_steps", ">= 1"),
    ("train.ema_decay=1", "train.ema_decay", "in [0, 1)"),
    ("train.adam_beta2=1.5", "train.adam_beta2", "in [0, 1)"),
    ("train.seed=-1", "train.seed", "in [0, 4294967295]"),
    ("train.sample_every=-1", "train.sample_every", ">= 0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints", ">= 1"),
    ("sample.num_inference_steps=0", "sample.num_inference_steps", ">= 1"),
    ("sample.inpaint_guidance_scale=.inf", "sample.inpaint_guidance_scale", "a finite number >= 0"),
    ("sample.refine_strength=0", "sample.refine_strength", "in (0, 1]"),
    ("sample.latent_clip=0", "sample.latent_clip", "> 0 or null"),
    ("data.flip_prob=2", "data.flip_prob", "in [0, 1]"),
    ("data.recolor_prob=-0.1", "data.recolor_prob", "in [0, 1]"),
    ("data.num_workers=-1", "data.num_workers", ">= 0"),
    ("data.prefetch_factor=0", "data.prefetch_factor", ">= 1"),
    ("data.cache_mb=-1", "data.cache_mb", ">= 0"),
    ("data.height=0", "data.height", ">= 1"),
    ("prior.cond_drop_prob=1", "prior.cond_drop_prob", "in [0, 1)"),
    ("inpaint.noise_offset=-0.1", "inpaint.noise_offset", ">= 0"),
    ("inpaint.unet.block_out_channels=[8,0]", "inpaint.unet.block_out_channels[1]", ">= 1"),
    ("refine.schedule.num_train_timesteps=0", "refine.schedule.num_train_timesteps", ">= 1"),
    ("encoders.autoencoder.scaling_factor=0", "encoders.autoencoder.scaling_factor", "> 0"),
    ("encoders.dino.num_hidden_layers=0", "encoders.dino.num_hidden_layers", ">= 1"),
]


@pytest.mark.parametrize("override, key, allowed", BAD_CONFIG, ids=[c[0] for c in BAD_CONFIG])
def test_config_values_out_of_range_name_key_value_and_range(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    message = str(err.value)
    value = override.split("=", 1)[1]
    assert f"'{key}'" in message and allowed in message, message
    assert value.strip(".").split(",")[-1].strip("[]") in message.lower(), message


BAD_ARGS = [
    (["generate", "--out", "o", "--source", "s", "--batch-size", "0"], "--batch-size", ">= 1"),
    (["generate", "--out", "o", "--source", "s", "--num-samples", "0"], "--num-samples", "in [1, 64]"),
    (["generate", "--out", "o", "--source", "s", "--num-samples", "1000000"], "--num-samples", "in [1, 64]"),
    (["generate", "--out", "o", "--source", "s", "--refine-strength", "0"], "--refine-strength", "in (0, 1]"),
    (["generate", "--out", "o", "--source", "s", "--seed", "-3"], "--seed", "in [0, 4294967295]"),
    (["generate", "--out", "o", "--source", "s", "--steps", "two"], "--steps", "an integer in [1, 1000]"),
    (["generate", "--out", "o", "--source", "s", "--steps", "1000000000"], "--steps", "an integer in [1, 1000]"),
    (["refine", "--out", "o", "--images", "x", "--guidance", "-1"], "--guidance", "a finite number in [0, 100]"),
    (["animate", "--out", "o", "--source", "s", "--poses", "wave", "--guidance", "nan"], "--guidance", "in [0, 100]"),
    (["animate", "--out", "o", "--source", "s", "--poses", "wave", "--steps", "1001"], "--steps", "in [1, 1000]"),
    (["animate", "--out", "o", "--source", "s", "--poses", "wave", "--fps", "nan"], "--fps", "a finite number > 0"),
    (["animate", "--out", "o", "--source", "s", "--poses", "wave", "--smooth", "-1"], "--smooth", ">= 0"),
    (["animate", "--out", "o", "--source", "s", "--poses", "wave", "--frames", "0"], "--frames", ">= 1"),
    (["export-coarse", "--out", "o", "--inpaint", "m", "--limit", "0"], "--limit", ">= 1"),
    (["evaluate", "--pred", "p", "--gt", "g", "--best-of", "0"], "--best-of", ">= 1"),
    (["evaluate", "--pred", "p", "--gt", "g", "--workers", "-1"], "--workers", ">= 0"),
    (["evaluate", "--pred", "p", "--gt", "g", "--batch-size", "0"], "--batch-size", ">= 1"),
    (["data", "synth", "--out", "o", "--poses", "1"], "--poses", "in [2, 1000]"),
    (["data", "synth", "--out", "o", "--height", "8"], "--height", "in [32, 8192]"),
    (["data", "synth", "--out", "o", "--width", "100000"], "--width", "in [24, 8192]"),
    (["data", "synth", "--out", "o", "--train-ids", "1000000000"], "--train-ids", "in [0, 100000]"),
    (["pose", "extract", "x", "--out", "o", "--threshold", "1.5"], "--threshold", "in [0, 1]"),
    (["pose", "render", "x", "--out", "o", "--width", "0"], "--width", "in [1, 8192]"),
    (["demo", "--steps", "0"], "--steps", "in [1, 1000]"),
    (["demo", "--seed", "4294967296"], "--seed", "in [0, 4294967295]"),
]


@pytest.mark.parametrize("argv, argument, allowed", BAD_ARGS, ids=[" ".join(a[0][:1] + a[0][-2:]) for a in BAD_ARGS])
def test_arguments_out_of_range_are_refused_when_parsed(argv, argument, allowed, capsys):
    code, _, stderr = run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in stderr
    assert f"argument {argument}: expected" in stderr and allowed in stderr and repr(argv[-1]) in stderr, stderr
