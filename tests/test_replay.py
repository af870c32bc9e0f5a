"""Settings files (`pcdms.jobs.replay`): what `pcdms app` writes and `pcdms generate --settings` reads."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pcdms.cli import main
from pcdms.errors import UserError
from pcdms.jobs.replay import RunSettings, check_source, pixels_sha256, read_settings, write_settings
from pcdms.pose.gallery import gallery


def _settings(**changes) -> RunSettings:
    poses = gallery()
    base = dict(target_pose=poses["front-walking"], source_pose=poses["front-standing"], stages="B2", steps=7,
                guidance=1.5, seed=3, num_samples=2, refine_strength=0.4, model="demo")
    return RunSettings(**{**base, **changes})


def test_settings_round_trip(tmp_path):
    source = Image.new("RGB", (44, 64), (1, 2, 3))
    written = _settings(source_size=source.size, source_pixels_sha256=pixels_sha256(source))
    back = read_settings(write_settings(tmp_path / "s.json", written))
    assert back.target_pose.allclose(written.target_pose, atol=1e-3)
    assert back.source_pose.allclose(written.source_pose, atol=1e-3)
    fields = ("stages", "steps", "guidance", "seed", "num_samples", "refine_strength", "model", "source_size",
              "source_pixels_sha256")
    assert [getattr(back, f) for f in fields] == [getattr(written, f) for f in fields]
    check_source(back, source, "the photo")
    with pytest.raises(UserError, match="not the photo these settings were made with"):
        check_source(back, Image.new("RGB", (44, 64), (1, 2, 4)), "the photo")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="other"), "not a pcdms settings file"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.update(stages="B7"), "field 'stages'"),
    (lambda d: d.update(seed="zero"), "field 'seed'"),
    (lambda d: d["target_pose"].update(keypoints=[[1, 2]] * 17), "field 'target_pose'"),
    # issue 28: the ranges `pcdms generate` applies, never an all-black image or a traceback
    (lambda d: d.update(guidance=float("nan")), r"field 'guidance' must be a finite number in \[0, 100\] or null, got nan"),
    (lambda d: d.update(guidance=-50), "field 'guidance' must be"),
    (lambda d: d.update(seed=2**70), "field 'seed' must be an integer in"),
    (lambda d: d.update(steps=10**9), "field 'steps' must be an integer in"),
    (lambda d: d.update(num_samples=0), "field 'num_samples'"),
    (lambda d: d.update(refine_strength=0), "field 'refine_strength'"),
    (lambda d: d.update(source_size="ab"), "field 'source_size' must be null or"),
    (lambda d: d.update(source_size=[10**6, 10**6]), "field 'source_size'"),
    (lambda d: d["target_pose"].update(height=10**6), "field 'target_pose'.*height and width"),
])
def test_bad_settings_files_name_the_field(tmp_path, change, message):
    path = write_settings(tmp_path / "s.json", _settings())
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        read_settings(path)


def test_deeply_nested_settings_file_is_one_line(tmp_path):
    path = tmp_path / "nested.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested.json: not a readable settings JSON file"):
        read_settings(path)


def test_generate_settings_refuses_mixed_or_mismatched_input(tmp_path, capsys):
    source = tmp_path / "me.png"
    Image.new("RGB", (44, 64), (9, 9, 9)).save(source)
    settings = write_settings(tmp_path / "s.json", _settings(model="my-model"))
    assert main(["generate", "--settings", str(settings), "--source", str(source), "--out", str(tmp_path / "o")]) == 2
    assert "made with model 'my-model'" in capsys.readouterr().err
    settings = write_settings(tmp_path / "s.json", _settings())
    args = ["generate", "--settings", str(settings), "--source", str(source), "--out", str(tmp_path / "o")]
    assert main([*args, "--target-pose", str(settings)]) == 2
    assert "--settings brings its own poses" in capsys.readouterr().err
