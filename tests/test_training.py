"""The one training loop: every stage trains through the CLI, resumes exactly, stops on NaN, runs on 2 processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pcdms.cli import main
from pcdms.data.synth import generate
from pcdms.models.inpaint import InpaintModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel
from pcdms.training.loop import NonFiniteLossError, list_checkpoints, train
from pcdms.config import load_config

FAST = ["train.batch_size=2", "train.log_every=1", "train.sample_every=0", "data.num_workers=0"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, train_identities=3, test_identities=1, poses_per_identity=3, height=64, width=48, seed=1)
    return root


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("stage, cls", [("prior", PriorModel), ("inpaint", InpaintModel)])
def test_stage_trains_through_cli_and_loads(tmp_path, synth_root, stage, cls):
    out = tmp_path / stage
    code = main(["train", "--stage", stage, "--config", "tiny", "--out", str(out), "--no-progress",
                 f"data.root={synth_root}", "train.max_steps=2", "train.checkpoint_every=1", *FAST,
                 "train.sample_every=2", "sample.num_inference_steps=1"])
    assert code == 0
    # the periodic sample grid: source | target pose | generated (prior: nearest training image) | ground truth
    grid = Image.open(out / "samples" / "step-0000002.png")
    assert grid.width > 4 * 96 and grid.height > 4 * 96
    model = cls.from_pretrained(out / "model")
    assert isinstance(model, cls)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-0000001", "checkpoint-0000002"]
    assert (out / "config.yaml").is_file() and any((out / "logs").rglob("events.out.tfevents*"))


def test_refine_trains_on_exported_coarse_images(tmp_path, synth_root, capsys):
    args = ["train", "--stage", "refine", "--config", "tiny", "--out", str(tmp_path / "r"), "--no-progress",
            f"data.root={synth_root}", "train.max_steps=1", *FAST]
    assert main(args) == 2
    assert "export-coarse" in capsys.readouterr().err
    torch.manual_seed(0)
    InpaintModel(load_config("tiny").inpaint).save_pretrained(tmp_path / "inpaint")
    coarse = tmp_path / "coarse"
    export = ["export-coarse", "--inpaint", str(tmp_path / "inpaint"), "--out", str(coarse), "--no-progress",
              "--config", "tiny", f"data.root={synth_root}", "sample.num_inference_steps=1"]
    assert main(export + ["--limit", "2"]) == 0
    assert main(args + [f"data.coarse_dir={coarse}"]) == 2  # 2 of 18 pairs exported: names the missing ones
    assert "missing" in capsys.readouterr().err
    assert main(export) == 0
    assert "2 already there" in capsys.readouterr().out  # resumed, finished images skipped
    assert len(list(coarse.glob("*_to_*.png"))) == 18
    assert main(args + [f"data.coarse_dir={coarse}"]) == 0
    RefineModel.from_pretrained(tmp_path / "r" / "model")


def test_export_coarse_with_prior_makes_the_images_generation_makes(tmp_path, synth_root):
    """--prior: stage 2 gets the prior's embedding, as at generation, so stage 3 trains on test-time inputs."""
    import numpy as np

    from pcdms.jobs.generate import dataset_items
    from pcdms.sampling.pipeline import PCDMsPipeline

    torch.manual_seed(0)
    PriorModel(load_config("tiny").prior).save_pretrained(tmp_path / "prior")
    InpaintModel(load_config("tiny").inpaint).save_pretrained(tmp_path / "inpaint")
    common = ["--inpaint", str(tmp_path / "inpaint"), "--no-progress", "--config", "tiny", "--limit", "2",
              f"data.root={synth_root}", "sample.num_inference_steps=2"]
    assert main(["export-coarse", *common, "--out", str(tmp_path / "gt")]) == 0
    assert main(["export-coarse", *common, "--prior", str(tmp_path / "prior"), "--out", str(tmp_path / "p")]) == 0
    cfg = load_config("tiny", [f"data.root={synth_root}", "sample.num_inference_steps=2"])
    pipe = PCDMsPipeline.from_stages(cfg, tmp_path / "inpaint", tmp_path / "prior")
    job = dataset_items(pipe, synth_root, "train", tmp_path / "unused", limit=2)
    for item in job.items:
        inputs = item.prepare()
        expected = pipe(inputs["source_image"], inputs["target_pose"], inputs["source_pose"], stages="B2",
                        generator=inputs["generator"]).images[0]
        name = item.paths[0].name
        exported = np.asarray(Image.open(tmp_path / "p" / name), dtype=np.int16)
        assert np.abs(exported - np.asarray(expected, dtype=np.int16)).max() <= 1
        with_truth = np.asarray(Image.open(tmp_path / "gt" / name), dtype=np.int16)
        assert np.abs(exported - with_truth).max() > 8  # the ground-truth embedding gives another image


def test_stage2_trains_on_the_embedding_its_prior_samples(tmp_path, synth_root, monkeypatch):
    """train.prior_embeddings: stage 2 sees what the named prior samples for each batch, not the target's own
    embedding. A prior whose last layer always says `wanted` makes that checkable whatever its start noise."""
    cfg = load_config("tiny")
    torch.manual_seed(0)
    prior = PriorModel(cfg.prior)
    wanted = torch.linspace(-0.5, 0.5, cfg.prior.embed_dim)  # normalised x0, inside DDIM's clip range
    with torch.no_grad():
        prior.proj_to_clip_embeddings.weight.zero_()
        prior.proj_to_clip_embeddings.bias.copy_(wanted)
    prior.save_pretrained(tmp_path / "prior")
    seen = []
    original = InpaintModel.loss

    def spy(self, latents, conditions, generator=None):
        seen.append(conditions["global_embeds"].detach().clone())
        return original(self, latents, conditions, generator)

    monkeypatch.setattr(InpaintModel, "loss", spy)
    overrides = [f"data.root={synth_root}", "train.max_steps=2", "sample.num_inference_steps=2", *FAST]
    train("inpaint", load_config("tiny", overrides + [f"train.prior_embeddings={tmp_path / 'prior'}"]),
          tmp_path / "with", progress=False)
    expected = prior.denormalize(wanted)
    assert len(seen) == 2 and all(torch.allclose(e, expected.expand_as(e), atol=1e-4) for e in seen), seen
    seen.clear()
    train("inpaint", load_config("tiny", overrides), tmp_path / "without", progress=False)
    assert len(seen) == 2 and not any(torch.allclose(e, expected.expand_as(e), atol=0.1) for e in seen)


@pytest.mark.parametrize("stage, value, says", [
    ("inpaint", "missing", "not a trained stage-1 folder"),
    ("prior", "prior", "--stage inpaint"),
    ("inpaint", "inpaint", "not a 'prior' model"),
])
def test_prior_embeddings_setting_is_checked_before_training(tmp_path, synth_root, capsys, stage, value, says):
    torch.manual_seed(0)
    PriorModel(load_config("tiny").prior).save_pretrained(tmp_path / "prior")
    InpaintModel(load_config("tiny").inpaint).save_pretrained(tmp_path / "inpaint")
    args = ["train", "--stage", stage, "--config", "tiny", "--out", str(tmp_path / "run"), "--no-progress",
            f"data.root={synth_root}", "train.max_steps=1", *FAST, f"train.prior_embeddings={tmp_path / value}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train.prior_embeddings" in err and says in err and "Traceback" not in err
    assert not list_checkpoints(tmp_path / "run")


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, synth_root):
    overrides = [f"data.root={synth_root}", "train.checkpoint_every=2", "data.flip_prob=0.5", *FAST]
    straight = train("inpaint", load_config("tiny", overrides + ["train.max_steps=4"]), tmp_path / "a", progress=False)
    # "killed" after step 2: a run of 2 steps, then a resumed run to step 4 (a new process state).
    train("inpaint", load_config("tiny", overrides + ["train.max_steps=2"]), tmp_path / "b", progress=False)
    torch.manual_seed(12345)  # whatever the RNG holds now must not matter: resume restores it
    resumed = train("inpaint", load_config("tiny", overrides + ["train.max_steps=4"]), tmp_path / "b",
                    resume=True, progress=False)
    assert resumed.final_step == straight.final_step == 4
    a, b = _weights(straight.final_model_dir), _weights(resumed.final_model_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    raw_a = _weights(tmp_path / "a" / "checkpoint-0000004" / "model")
    raw_b = _weights(tmp_path / "b" / "checkpoint-0000004" / "model")
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)


def test_cached_encoder_outputs_train_the_same_model(tmp_path, synth_root):
    # train.cache_encoder_outputs encodes each distinct training image once: same training, fewer encoder runs
    overrides = [f"data.root={synth_root}", "train.max_steps=3", "data.flip_prob=0.5", *FAST]
    plain = train("inpaint", load_config("tiny", overrides), tmp_path / "plain", progress=False)
    cached = train("inpaint", load_config("tiny", [*overrides, "train.cache_encoder_outputs=true"]), tmp_path / "cached",
                   progress=False)
    a, b = _weights(plain.final_model_dir), _weights(cached.final_model_dir)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_existing_run_without_resume_is_refused(tmp_path, synth_root, capsys):
    args = ["train", "--stage", "prior", "--config", "tiny", "--out", str(tmp_path), "--no-progress",
            f"data.root={synth_root}", "train.max_steps=1", *FAST]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_nan_loss_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path, synth_root, monkeypatch):
    cfg = load_config("tiny", [f"data.root={synth_root}", "train.max_steps=5", "train.checkpoint_every=2", *FAST])
    calls = {"n": 0}
    original = PriorModel.training_loss

    def poisoned(self, batch, encoders, generator=None):
        calls["n"] += 1
        loss = original(self, batch, encoders, generator)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(PriorModel, "training_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 3.*checkpoint-0000002"):
        train("prior", cfg, tmp_path, progress=False)
    good = list_checkpoints(tmp_path)
    assert [p.name for p in good] == ["checkpoint-0000002"]
    PriorModel.from_pretrained(good[-1] / "model")  # intact and loadable
    assert not list(tmp_path.glob("*.tmp"))


def test_half_written_checkpoint_is_ignored(tmp_path, synth_root):
    cfg = load_config("tiny", [f"data.root={synth_root}", "train.max_steps=2", "train.checkpoint_every=1", *FAST])
    train("prior", cfg, tmp_path, progress=False)
    # a save killed midway: the .tmp folder, or a folder without its completion marker
    (tmp_path / "checkpoint-0000003.tmp").mkdir()
    broken = tmp_path / "checkpoint-0000004"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"truncated")
    assert list_checkpoints(tmp_path)[-1].name == "checkpoint-0000002"
    resumed = train("prior", load_config("tiny", [f"data.root={synth_root}", "train.max_steps=3", *FAST]),
                    tmp_path, resume=True, progress=False)
    assert resumed.final_step == 3


@pytest.mark.slow
def test_two_process_run_completes_and_loads(tmp_path, synth_root):
    """Two CPU processes, DDP over gloo. `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate
    needs mpirun for several CPU processes), so torchrun's launcher (--multi_gpu) starts two and
    ACCELERATE_USE_CPU=1 keeps them on the CPU."""
    import socket

    out = tmp_path / "ddp"
    with socket.socket() as free:  # other jobs on this machine may hold torchrun's default port
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
           "--main_process_port", port, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "pcdms.cli", "train", "--stage", "inpaint", "--config", "tiny", "--out", str(out), "--no-progress",
           f"data.root={synth_root}", "train.max_steps=2", *FAST]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained inpaint to step 2") == 1
    InpaintModel.from_pretrained(out / "model")
    # only the main process reports: the summary and each progress line once
    lines = result.stdout.splitlines()
    assert lines.count("train inpaint") == 1 and "cpu x 2 processes" in result.stdout
    steps = [x.split(" | ")[0] for x in lines if x.startswith("train inpaint: step ")]
    assert steps == ["train inpaint: step 1/2 (50%)", "train inpaint: step 2/2 (100%)"]
