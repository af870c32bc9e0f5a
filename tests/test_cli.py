"""Every `pcdms` command explains itself, and `--help` never needs torch to be imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pcdms.cli import build_parser, command_modules, main

EXPECTED = {"app", "assemble", "config", "data", "demo", "evaluate", "export-coarse", "generate", "pose", "refine", "train"}


def _subcommands() -> list[list[str]]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    names = []
    for name, sub in actions[0].choices.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        names += [[name, child] for child in nested[0].choices] if nested else [[name]]
    return names


def test_every_capability_has_a_command():
    top = {path[0] for path in _subcommands()}
    assert EXPECTED <= top, f"missing commands: {EXPECTED - top}"
    assert "common" not in command_modules()


@pytest.mark.parametrize("path", _subcommands(), ids=lambda p: " ".join(p))
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: pcdms") and len(text) > 200


def test_top_level_help_is_fast_and_imports_no_torch():
    code = "import sys; from pcdms.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_unknown_arguments_are_reported(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--frobnicate", "--out", "x"])
    assert exit_info.value.code == 2
    assert "--frobnicate" in capsys.readouterr().err


NOISE = ("TensorFlow Lite", "absl::InitializeLog", "inference_feedback_manager", "W0000", "Loading weights")


def _pcdms(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcdms.cli", *argv], capture_output=True, text=True, timeout=300)


def test_third_party_log_noise_is_hidden_unless_verbose(tmp_path):
    from pcdms.commands.demo import ASSETS

    photo = ASSETS / "inputs" / "id00161_00_front-full.png"
    # mediapipe extracts the source's pose (TensorFlow Lite, absl), transformers loads the encoders' weights
    quiet = _pcdms("animate", "--source", str(photo), "--poses", "wave", "--frames", "1", "--steps", "1",
                   "--device", "cpu", "--no-progress", "--out", str(tmp_path / "anim"))
    assert quiet.returncode == 0, quiet.stderr
    assert not [word for word in NOISE if word in quiet.stderr], quiet.stderr
    assert (tmp_path / "anim" / "animation.mp4").is_file()
    loud = _pcdms("--verbose", "pose", "extract", str(photo), "--out", str(tmp_path / "pose"))
    assert loud.returncode == 0 and "TensorFlow Lite" in loud.stderr  # the noise is there to be hidden
    after = _pcdms("pose", "extract", str(photo), "--out", str(tmp_path / "pose2"), "--verbose")
    assert after.returncode == 0 and "TensorFlow Lite" in after.stderr


def test_verbose_is_accepted_before_and_after_the_command(capsys):
    assert main(["--verbose", "pose", "gallery"]) == 0
    assert main(["pose", "gallery", "--verbose"]) == 0
    assert "front-standing" in capsys.readouterr().out
