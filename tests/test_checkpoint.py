"""Resume reads only safetensors and JSON: a pickle planted in a checkpoint never runs, an old pickled
checkpoint is refused, and the state it does read is the whole state (resume is bit-exact: test_training)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from pcdms.cli import main
from pcdms.data.synth import generate

FAST = ["train.batch_size=2", "train.log_every=1", "train.sample_every=0", "data.num_workers=0"]


class _Payload:
    """Unpickling this runs `os.system(command)`: what a malicious checkpoint would hold."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _plant(path: Path, sentinel: Path) -> None:
    path.write_bytes(pickle.dumps(_Payload(f"touch {sentinel}")))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, train_identities=2, test_identities=1, poses_per_identity=2, height=64, width=48, seed=3)
    return root


def _train(run: Path, root: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--stage", "prior", "--config", "tiny", "--out", str(run), "--no-progress",
            f"data.root={root}", f"train.max_steps={steps}", "train.checkpoint_every=1", *FAST, *extra]


def test_checkpoint_holds_no_pickle_and_planted_payload_never_runs(tmp_path, synth_root, capsys):
    run = tmp_path / "run"
    assert main(_train(run, synth_root, 1)) == 0
    checkpoint = run / "checkpoint-0000001"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"training_state.safetensors", "training_state.json", "rng-0.safetensors", "rng-0.json"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".bin", ".pt"))], names
    # Every name accelerate's load_state would unpickle, each holding a payload.
    sentinel = tmp_path / "payload-ran"
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin",
                 "scheduler.bin", "scaler.pt", "sampler.bin"):
        _plant(checkpoint / name, sentinel)
    assert main(_train(run, synth_root, 2) + ["--resume"]) == 0
    assert "trained prior to step 2" in capsys.readouterr().out
    assert not sentinel.exists(), "resume unpickled a file from the run folder"


def test_old_pickled_checkpoint_is_refused_without_running_it(tmp_path, synth_root, capsys):
    run = tmp_path / "run"
    assert main(_train(run, synth_root, 1)) == 0
    checkpoint = run / "checkpoint-0000001"
    for name in ("training_state.json", "training_state.safetensors"):
        (checkpoint / name).unlink()  # what accelerate's save_state left in older runs
    sentinel = tmp_path / "payload-ran"
    _plant(checkpoint / "custom_checkpoint_0.pkl", sentinel)
    capsys.readouterr()
    assert main(_train(run, synth_root, 2) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-0000001" in err and "custom_checkpoint_0.pkl" in err and "Traceback" not in err
    assert not sentinel.exists()


@pytest.mark.parametrize("text, words", [
    ('{"format": 2}', "damaged training state (KeyError"),  # issue 28: an edited file was a KeyError traceback
    ('{"format": 2, "optimizer": {"params": 5}}', "damaged training state (TypeError"),
    ('[1, 2]', "unknown checkpoint format 'list'"),
    ("[" * 100_000, "unreadable checkpoint file"),  # nested past Python's stack
])
def test_tampered_training_state_is_one_line_naming_the_file(tmp_path, synth_root, capsys, text, words):
    run = tmp_path / "run"
    assert main(_train(run, synth_root, 1)) == 0
    (run / "checkpoint-0000001" / "training_state.json").write_text(text)
    capsys.readouterr()
    assert main(_train(run, synth_root, 2) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert "checkpoint-0000001/training_state.json" in err and words in err, err
