"""DeepSpeed ZeRO-2 (issue 16): the shipped accelerate config, the settings pcdms fills in or refuses, and (only
where the optional `deepspeed` extra is installed) real ZeRO-2 training steps on the CPU with a bit-identical
resume. accelerate refuses its DeepSpeed plugin without the package, so that last test is skipped without it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from pcdms.training import zero
from pcdms.errors import UserError

REPO = Path(__file__).resolve().parents[1]
ZERO2 = REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml"


def test_shipped_zero2_config_loads_through_accelerate():
    config = load_config_from_file(str(ZERO2))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 2
    assert config.deepspeed_config["offload_optimizer_device"] == "none"  # offload off by default
    assert config.mixed_precision == "bf16"
    # left to pcdms, which fills them from the train config (a stale number here would be used silently)
    assert "gradient_clipping" not in config.deepspeed_config
    assert "gradient_accumulation_steps" not in config.deepspeed_config


def test_commented_offload_variant_is_a_valid_config(tmp_path):
    text = ZERO2.read_text()
    assert "  # offload_optimizer_device: cpu" in text
    variant = tmp_path / "offload.yaml"
    variant.write_text(text.replace("  offload_optimizer_device: none\n", "")
                       .replace("  # offload_optimizer_device: cpu", "  offload_optimizer_device: cpu"))
    assert load_config_from_file(str(variant)).deepspeed_config["offload_optimizer_device"] == "cpu"


def _deepspeed_run(stage: int = 2, **config) -> SimpleNamespace:
    ds_plugin = SimpleNamespace(zero_stage=stage, deepspeed_config=dict(config))
    return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=ds_plugin),
                           device=torch.device("cpu"))


def test_clipping_and_accumulation_come_from_the_train_config():
    run = _deepspeed_run(gradient_clipping="auto")
    zero.check_and_fill(run, max_grad_norm=0.5, gradient_accumulation_steps=4)
    assert run.state.deepspeed_plugin.deepspeed_config == {"gradient_clipping": 0.5, "gradient_accumulation_steps": 4}
    agreeing = _deepspeed_run(gradient_clipping=0.5, gradient_accumulation_steps=4)
    zero.check_and_fill(agreeing, max_grad_norm=0.5, gradient_accumulation_steps=4)


@pytest.mark.parametrize("run, named", [
    (_deepspeed_run(gradient_clipping=1.0), "train.max_grad_norm"),
    (_deepspeed_run(gradient_accumulation_steps=2), "train.gradient_accumulation_steps"),
    (_deepspeed_run(stage=3), "ZeRO stage 3"),
    (_deepspeed_run(stage=0), "ZeRO stage 0"),
])
def test_a_deepspeed_config_that_disagrees_is_refused_by_name(run, named):
    with pytest.raises(UserError, match=named):
        zero.check_and_fill(run, max_grad_norm=0.5, gradient_accumulation_steps=1)


def test_half_precision_engines_run_the_loss_under_autocast():
    with zero.autocast(_deepspeed_run(bf16={"enabled": True})):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with zero.autocast(_deepspeed_run(bf16={"enabled": False})):
        assert not torch.is_autocast_enabled("cpu")
    plain = SimpleNamespace(distributed_type=DistributedType.NO)
    with zero.autocast(plain):
        assert not torch.is_autocast_enabled("cpu")


def test_optimizer_slices_round_trip_without_pickle(tmp_path):
    state = {"base_optimizer_state": {"state": {0: {"exp_avg": torch.arange(4.0), "step": torch.tensor(3.0)}},
                                      "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]},
             "single_partition_of_fp32_groups": [torch.ones(2, 3)], "partition_count": [2], "overflow": False}
    tensors: dict = {}
    encoded = zero._encode(state, "zero", tensors)
    import json

    decoded = zero._decode(json.loads(json.dumps(encoded)), tensors)
    assert decoded["base_optimizer_state"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(decoded["base_optimizer_state"]["state"][0]["exp_avg"], torch.arange(4.0))  # int key kept
    assert torch.equal(decoded["single_partition_of_fp32_groups"][0], torch.ones(2, 3))
    with pytest.raises(TypeError, match="without pickling"):
        zero._encode({"scaler": object()}, "zero", {})


_STEPS = """
import os, sys
os.environ.update(ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_ZERO_STAGE="2", RANK="0", WORLD_SIZE="1",
                  LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[4])
from pcdms.config import load_config
from pcdms.data.synth import generate
from pcdms.training.loop import train
root, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
if not os.path.isdir(root):
    generate(root, train_identities=2, test_identities=1, poses_per_identity=4, height=64, width=48, seed=0)
cfg = load_config("tiny", [f"data.root={root}", f"train.max_steps={steps}", "train.checkpoint_every=1",
                           "train.sample_every=0", "train.mixed_precision=bf16", "train.max_grad_norm=0.5"])
print("loss", train("inpaint", cfg, out, resume=True, progress=False).last_loss)
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="the optional deepspeed extra is not installed")
def test_zero2_bf16_steps_on_the_cpu_resume_bit_identically(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "steps.py"
    script.write_text(_STEPS)

    def steps(out: str, count: int, port: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([sys.executable, str(script), str(tmp_path / "data"), str(tmp_path / out), str(count),
                               str(port)], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]

    steps("straight", 2, 29611)
    steps("resumed", 1, 29612)
    steps("resumed", 2, 29613)  # continues from checkpoint-0000001: optimiser slice, EMA, schedule, RNG
    final = tmp_path / "straight" / "checkpoint-0000002"
    assert (final / "zero-0.safetensors").is_file() and (final / "zero-0.json").is_file()
    assert not list(final.glob("*.pkl")) and not list(final.glob("*.bin"))
    for weights in ("model", "model_ema"):
        straight = load_file(str(final / weights / "model.safetensors"))
        resumed = load_file(str(tmp_path / "resumed" / "checkpoint-0000002" / weights / "model.safetensors"))
        assert straight.keys() == resumed.keys()
        assert all(torch.equal(straight[k], resumed[k]) for k in straight), weights
    ema = load_file(str(final / "model_ema" / "model.safetensors"))
    assert {v.dtype for v in ema.values() if v.is_floating_point()} == {torch.float32}  # EMA kept in fp32
