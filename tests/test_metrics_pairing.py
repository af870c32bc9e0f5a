"""Prediction <-> ground-truth matching, problems reported by name, sizes and pairs files (pcdms.metrics.pairing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcdms.errors import UserError
from pcdms.metrics.images import EvalSize, parse_size
from pcdms.metrics.pairing import match_predictions, read_pairs_csv


def _files(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes(b"")  # matching looks at names only
        paths.append(path)
    return paths


def test_predictions_are_matched_to_their_target_whatever_the_extensions(tmp_path):
    gt = _files(tmp_path / "gt", ["b.jpg", "c.png", "d.png"])
    pred = _files(tmp_path / "pred", ["a_to_b.png", "x.jpg_to_c.jpg.png", "a_to_d.jpg"])
    matching = match_predictions(pred, gt)
    assert matching.problems() == {}
    found = {key: [(p.path.name, p.gt_path.name) for p in preds] for key, preds in matching.pairs.items()}
    assert found == {
        "a_to_b": [("a_to_b.png", "b.jpg")],
        "x_to_c": [("x.jpg_to_c.jpg.png", "c.png")],
        "a_to_d": [("a_to_d.jpg", "d.png")],
    }


def test_missing_and_extra_files_are_reported_by_name(tmp_path):
    gt = _files(tmp_path / "gt", ["b.png", "c.png"])
    pred = _files(tmp_path / "pred", ["a_to_b.png", "notes.png", "a_to_zzz.png", "a_to_c.png", "a_to_c.jpg"])
    matching = match_predictions(pred, gt)
    assert matching.unparsed == ["notes.png"]
    assert matching.missing_gt == ["a_to_zzz.png"]
    assert len(matching.duplicates) == 1 and matching.duplicates[0].startswith("a_to_c.png")
    assert sorted(matching.pairs) == ["a_to_b", "a_to_c"]
    assert set(matching.problems()) == {"unparsed", "missing_gt", "duplicates"}


def test_pairs_file_reports_pairs_without_prediction_and_predictions_not_listed(tmp_path):
    gt = _files(tmp_path / "gt", ["b.png", "c.png"])
    pred = _files(tmp_path / "pred", ["a_to_b.png", "q_to_c.png"])
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text(",from,to\n0,a.jpg,b.jpg\n1,a.jpg,c.jpg\n")  # PATN layout with an index column
    matching = match_predictions(pred, gt, read_pairs_csv(pairs_csv))
    assert matching.missing_pred == ["a_to_c"]
    assert matching.not_in_pairs == ["q_to_c.png"]
    assert list(matching.pairs) == ["a_to_b"]


def test_a_name_holding_to_twice_uses_the_split_whose_target_exists(tmp_path):
    gt = _files(tmp_path / "gt", ["go_to_b.png"])
    pred = _files(tmp_path / "pred", ["a_to_go_to_b.png"])
    matching = match_predictions(pred, gt)
    [prediction] = matching.predictions()
    assert (prediction.source, prediction.target, prediction.gt_path.name) == ("a", "go_to_b", "go_to_b.png")


def test_a_pairs_file_settles_a_name_both_of_whose_targets_exist(tmp_path):
    gt = _files(tmp_path / "gt", ["go_to_b.png", "b.png"])
    pred = _files(tmp_path / "pred", ["a_to_go_to_b.png"])
    # both readings find a ground truth: the last `_to_` splits, as refine and the dataset read it (pcdms.names)
    assert list(match_predictions(pred, gt).pairs) == ["a_to_go_to_b"]
    assert [p.target for p in match_predictions(pred, gt).predictions()] == ["b"]
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text("from,to\na.jpg,go_to_b.jpg\n")
    matching = match_predictions(pred, gt, read_pairs_csv(pairs_csv))  # the listed source decides
    assert matching.problems() == {}
    [prediction] = matching.predictions()
    assert (prediction.source, prediction.target, prediction.gt_path.name) == ("a", "go_to_b", "go_to_b.png")


def test_single_sample_is_the_first_draw_and_best_of_keeps_n(tmp_path):
    gt = _files(tmp_path / "gt", ["b.png", "c.png"])
    pred = _files(tmp_path / "pred", ["a_to_b_sample1.png", "a_to_b.png", "a_to_b_sample2.png", "a_to_c_sample0.png"])
    single = match_predictions(pred, gt)
    assert [p.path.name for p in single.predictions()] == ["a_to_b.png", "a_to_c_sample0.png"]
    assert single.unused_samples == ["a_to_b_sample1.png", "a_to_b_sample2.png"]
    assert single.problems() == {}  # extra samples are information, not a mismatch
    best = match_predictions(pred, gt, best_of=2)
    assert [p.sample for p in best.pairs["a_to_b"]] == [0, 1]
    assert best.incomplete == ["a_to_c (samples 0; expected 0..1)"]


def test_pairs_file_and_size_errors_name_the_argument(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("source,target\na,b\n")
    with pytest.raises(UserError, match="pairs.csv.*'from' and 'to'"):
        read_pairs_csv(bad)
    with pytest.raises(UserError, match="--pairs .*not found"):
        read_pairs_csv(tmp_path / "absent.csv")
    assert parse_size("176x256") == EvalSize(width=176, height=256)
    assert str(parse_size("64X128")) == "64x128"
    for text in ("256", "0x10", "axb"):
        with pytest.raises(UserError, match="--size"):
            parse_size(text)
    with pytest.raises(UserError, match=r"--size '44x64': both sides must be at least 51 px"):
        parse_size("44x64")  # ssim_w51's window would not fit: an error up front, not a traceback later
    with pytest.raises(UserError, match="--best-of"):
        match_predictions([], [], best_of=0)
