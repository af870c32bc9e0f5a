"""`pcdms data check` lists every planted problem with its file and line, and exits non-zero."""

from __future__ import annotations

import json

import pytest

from pcdms.cli import main
from pcdms.data.synth import generate
from pcdms.pose import JOINTS


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "people"
    generate(root, train_identities=2, test_identities=1, poses_per_identity=3, height=64, width=48, seed=3)
    return root


def _line_of(path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(text):
            return number
    raise AssertionError(f"{text} not in {path}")


def test_clean_dataset_passes(dataset, capsys):
    assert main(["data", "check", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok:") and "train: 6 images, 12 pairs" in out


def test_every_planted_problem_is_reported_with_file_and_line(dataset, capsys):
    annotation = dataset / "synth-annotation-train.csv"
    pairs = dataset / "synth-pairs-train.csv"
    rows = annotation.read_text().splitlines()
    names = [row.split(":")[0] for row in rows[1:]]

    # 1. a keypoint far outside the 64x48 frame
    name, ys, xs, h, w = rows[1].split(":")
    x_list = json.loads(xs)
    moved = next(j for j, y in enumerate(json.loads(ys)) if y != -1 and x_list[j] != -1)
    x_list[moved] = 500
    rows[1] = ":".join([name, ys, json.dumps(x_list), h, w])
    # 2. a malformed row (lists too short), 3. an annotated image that is missing on disk
    rows.append("broken.png:[1, 2]:[3]:64:48")
    annotation.write_text("\n".join(rows) + "\n")
    (dataset / "train" / names[2]).unlink()
    # 4. an unreadable image
    (dataset / "train" / names[3]).write_bytes(b"not a png at all")
    # 5. a pair naming an image nobody annotated
    with pairs.open("a") as handle:
        handle.write(f"{names[0]},ghost.png\n")

    assert main(["data", "check", str(dataset)]) == 1
    lines = capsys.readouterr().out.splitlines()

    def reported(file, line, *words):
        prefix = f"{file}:line {line}:"
        hits = [x for x in lines if x.startswith(prefix) and all(w in x for w in words)]
        assert hits, f"no report '{prefix} ... {words}' in:\n" + "\n".join(lines)

    reported(annotation, 2, "outside", JOINTS[moved])
    reported(annotation, len(rows), "keypoints_y")
    reported(annotation, _line_of(annotation, names[2]), "not found", names[2])
    reported(annotation, _line_of(annotation, names[3]), "unreadable", names[3])
    reported(pairs, len(pairs.read_text().splitlines()), "ghost.png")
    assert len(lines) == 5  # nothing else, nothing twice


def test_test_split_problems_and_split_selection(dataset, capsys):
    pairs = dataset / "synth-pairs-test.csv"
    pairs.write_text(pairs.read_text() + "only_one_field\n")
    assert main(["data", "check", str(dataset), "--split", "train"]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert f"{pairs}:line {len(pairs.read_text().splitlines())}:" in out


def test_gfla_missing_pose_file_is_reported(tmp_path, capsys):
    (tmp_path / "test_pairs.txt").write_text("img/b.jpg,img/a.jpg\n")
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert str(tmp_path / "pose" / "a.txt") in out and "test_pairs.txt line 1" in out


def test_a_root_that_is_no_dataset_is_a_one_line_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no dataset files" in err
