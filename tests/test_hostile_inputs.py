"""Files crafted to exhaust memory (issue 28), as an attacker would write them: each row is a file and the command
that reads it; each must end in one line naming the file and what is wrong, before anything is allocated.

Then names in a dataset's files that leave the dataset root: reported by `data check`, refused by `generate`,
never written by `pose render`.

The rows: a YAML config whose nested aliases expand tenfold per level (23 million nodes from 516 bytes), through
`--config` and through a model folder's `config.yaml` (the presets' own few anchors still load); and a `.pt`
checkpoint whose tensors are expanded views of one element (a few bytes on disk, hundreds of GB once copied by
`convert`); a model folder whose own encoder config asks for far more parameters than its weights hold (drawn at
random in full before), or whose encoder weights are a pickle.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from pcdms.cli import main

DEMO_MODEL = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo" / "model"
DEMO_INPUTS = DEMO_MODEL.parent / "inputs"
TARGET_POSE = DEMO_INPUTS / "id00161_02_three-quarter-full.json"


def _generate(model: Path, tmp: Path, *extra: str, target_pose: Path = TARGET_POSE) -> list[str]:
    """`pcdms generate` of one demo pair with `model`, one step on the CPU."""
    return ["generate", "--model", str(model), "--source", str(DEMO_INPUTS / "id00161_00_front-full.png"),
            "--target-pose", str(target_pose), "--out", str(tmp / "out"), "--device", "cpu", "--no-progress",
            "--steps", "1", *extra]


def alias_bomb(levels: int = 7) -> str:
    """516 bytes of YAML whose nested aliases expand tenfold per level: 23 million nodes at depth 7."""
    lines = ['a0: &a0 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + f"\ntrain: {{note: *a{levels}}}\n"


def _config_file(tmp: Path) -> list[str]:
    (tmp / "bomb.yaml").write_text(alias_bomb())
    return ["train", "--stage", "inpaint", "--config", str(tmp / "bomb.yaml"), "--dry-run"]


def _model_folder(tmp: Path) -> list[str]:
    model = tmp / "model"
    shutil.copytree(DEMO_MODEL, model, ignore=shutil.ignore_patterns("*.safetensors"))
    (model / "config.yaml").write_text(alias_bomb() + (DEMO_MODEL / "config.yaml").read_text())
    return _generate(model, tmp)


def _expanded_views(tmp: Path) -> list[str]:
    views = {"unet.conv_in.weight": torch.zeros(1).expand(320, 9, 3, 3),
             "unet.huge": torch.zeros(1).expand(250_000, 250_000)}  # 250 GB once materialised
    torch.save({"module": views}, tmp / "mp_rank_00_model_states.pt")
    return ["convert", "--from-authors", str(tmp / "mp_rank_00_model_states.pt"), "--stage", "inpaint",
            "--out", str(tmp / "converted")]


def _model_with_dino(tmp: Path, change: Callable[[Path], None]) -> list[str]:
    """A copy of the demo model whose own DINOv2 folder (`encoders/dino`) is changed by `change`."""
    model = tmp / "model"
    shutil.copytree(DEMO_MODEL, model)
    change(model / "encoders" / "dino")
    return _generate(model, tmp)


def _huge_dino_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=16384, num_hidden_layers=48, intermediate_size=65536, num_attention_heads=16)
    (folder / "config.json").write_text(json.dumps(config))  # 103 billion parameters if drawn at random


def _pickled_dino(folder: Path) -> None:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")  # a pickle: never opened


def _pose_file(tmp: Path, change: Callable[[dict], object]) -> list[str]:
    """`generate` with a target pose JSON changed by `change` (which may return the file's whole text)."""
    data = json.loads(TARGET_POSE.read_text())
    text = change(data)
    (tmp / "pose.json").write_text(text if isinstance(text, str) else json.dumps(data))
    return _generate(DEMO_MODEL, tmp, target_pose=tmp / "pose.json")


@dataclass
class Row:
    id: str
    argv: Callable[[Path], list[str]]
    words: tuple[str, ...]  # what the one line must say


ROWS = [
    Row("yaml-aliases-in-config", _config_file, ("bomb.yaml", "aliases expand to 23,45")),
    Row("yaml-aliases-in-model-folder", _model_folder, ("config.yaml", "aliases expand to 23,45")),
    Row("pt-expanded-views", _expanded_views, ("mp_rank_00_model_states.pt", "expanded view")),
    Row("pose-json-canvas-of-a-million-pixels", lambda tmp: _pose_file(tmp, lambda d: d.update(
        canvas_height=10**6, canvas_width=10**6)), ("pose.json", "canvas_height and canvas_width must each be")),
    Row("pose-json-nested-past-the-stack", lambda tmp: _pose_file(tmp, lambda d: "[" * 100_000 + "]" * 100_000),
        ("pose.json", "not an OpenPose JSON file")),
    Row("encoder-config-bigger-than-its-weights", lambda tmp: _model_with_dino(tmp, _huge_dino_config),
        ("encoders/dino", "asks for 103,092,944,896 parameters but its weight files hold 24,064")),
    Row("encoder-with-pickled-weights-only", lambda tmp: _model_with_dino(tmp, _pickled_dino),
        ("encoders/dino", "only pickled pytorch_model.bin", "never loads")),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_crafted_file_is_refused_in_one_line(row, tmp_path, capsys):
    argv = row.argv(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) < 600, err[:2000]
    for word in row.words:
        assert word in lines[0], (word, lines[0])


# ---------------------------------------------------------------------- names that leave the dataset root
@pytest.fixture(scope="module")
def escaping_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """A PATN dataset whose annotation names one image by an absolute path and one through `..`, and whose
    pairs file climbs out too; the files those names point at exist (an attacker's target), outside the root."""
    from pcdms.data.synth import generate as synth

    base = tmp_path_factory.mktemp("escape")
    root = base / "data"
    synth(root, train_identities=0, test_identities=1, poses_per_identity=3, height=64, width=44, seed=4)
    victim = base / "victim.png"
    shutil.copy(next((root / "test").glob("*.png")), victim)
    annotation = root / "synth-annotation-test.csv"
    lines = annotation.read_text().splitlines()
    for index, name in ((1, str(victim)), (2, "../../victim.png")):
        lines[index] = ":".join([name, *lines[index].split(":")[1:]])
    annotation.write_text("\n".join(lines) + "\n")
    pairs = root / "synth-pairs-test.csv"
    pairs.write_text(pairs.read_text() + "../victim.png,/etc/passwd\n")
    return root, victim


def test_data_check_names_every_row_whose_image_leaves_the_root(escaping_dataset, capsys):
    root, victim = escaping_dataset
    code = main(["data", "check", str(root)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1
    assert f"synth-annotation-test.csv:line 2: image name '{victim}' is an absolute path" in text
    assert "synth-annotation-test.csv:line 3: image name '../../victim.png' climbs out with '..'" in text
    assert "synth-pairs-test.csv:line" in text and "'../victim.png' climbs out" in text
    assert "'/etc/passwd' is an absolute path" in text


def test_generate_refuses_a_dataset_whose_names_leave_the_root(escaping_dataset, tmp_path, capsys):
    root, _ = escaping_dataset
    code = main(["generate", "--dataset", str(root), "--split", "test", "--out", str(tmp_path / "out"), "--steps", "1",
                 "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "climbs out with '..'" in err
    assert not list((tmp_path / "out").rglob("*.png"))  # nothing generated (rglob of a missing folder is empty)


def test_pose_render_writes_only_inside_out(escaping_dataset, tmp_path, capsys):
    root, victim = escaping_dataset
    before = victim.read_bytes()
    main(["pose", "render", str(root), "--out", str(tmp_path / "out")])
    assert victim.read_bytes() == before  # the file the absolute and '..' names point at is untouched
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to((tmp_path / "out").resolve()) for p in written)
    assert "is an absolute path" in capsys.readouterr().err


# ---------------------------------------------------------------------- a model folder stays self-contained
def _folder_with(tmp: Path, config_lines: str = "", stage_change: dict | None = None) -> Path:
    model = tmp / "model"
    shutil.copytree(DEMO_MODEL, model)
    if config_lines:
        (model / "config.yaml").write_text(config_lines + (DEMO_MODEL / "config.yaml").read_text())
    if stage_change:
        path = model / "inpaint" / "config.json"
        saved = json.loads(path.read_text())
        saved["config"]["unet"].update(stage_change)
        path.write_text(json.dumps(saved))
    return model


@pytest.mark.parametrize("lines, words", [
    ("_base_: /etc/pcdms-elsewhere.yaml\n", ("config.yaml: _base_ '/etc/pcdms-elsewhere.yaml' is not a preset",)),
    ("_base_: ../../other.yaml\n", ("_base_ '../../other.yaml' is not a preset",)),
])
def test_model_folder_config_may_not_reach_outside(tmp_path, capsys, lines, words):
    code = main(_generate(_folder_with(tmp_path, lines), tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-2000:]
    for word in words:
        assert word in err, err


def _dino_path(text: str, path: str) -> str:
    """config.yaml text with encoders.dino.pretrained_path set to `path` (the folder's own copy is null)."""
    config = yaml.safe_load(text)
    assert config["encoders"]["dino"]["pretrained_path"] is None
    config["encoders"]["dino"]["pretrained_path"] = path
    return yaml.safe_dump(config, sort_keys=False)


def test_model_folder_encoder_paths_resolve_inside_it(tmp_path, capsys, monkeypatch):
    model = _folder_with(tmp_path)
    shutil.move(model / "encoders" / "dino", tmp_path / "dino")  # the folder's own copy would take precedence
    text = (model / "config.yaml").read_text()
    (model / "config.yaml").write_text(_dino_path(text, str(tmp_path / "dino")))
    assert main(_generate(model, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "encoders.dino.pretrained_path" in err and "points outside the model folder" in err, err
    # the user's model directory is where shared encoders live
    monkeypatch.setenv("PCDMS_MODEL_DIR", str(tmp_path))
    (model / "config.yaml").write_text(_dino_path(text, "${PCDMS_MODEL_DIR}/dino"))
    assert main(_generate(model, tmp_path)) == 0, capsys.readouterr().err
    # and a relative path resolves inside the folder
    shutil.move(tmp_path / "dino", model / "my-dino")
    (model / "config.yaml").write_text(_dino_path(text, "my-dino"))
    assert main(_generate(model, tmp_path)) == 0, capsys.readouterr().err


def test_saved_stage_never_follows_a_base_model_path(tmp_path, capsys):
    """A stage folder holds all its weights: a `pretrained_path` written into its config.json is not read."""
    model = _folder_with(tmp_path, stage_change={"pretrained_path": str(tmp_path / "no-such-base-unet")})
    assert main(_generate(model, tmp_path)) == 0, capsys.readouterr().err
