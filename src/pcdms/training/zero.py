"""DeepSpeed ZeRO-2 through accelerate: what the one training loop does differently when launched with
`accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m pcdms.cli train ...`.

accelerate's DeepSpeed plugin hands model, optimiser and data loader to `deepspeed.initialize`; the engine
then steps the optimiser inside `accelerator.backward`, clips by its own `gradient_clipping`, and (bf16/fp16)
keeps the trainable weights in half precision with fp32 master copies partitioned across the processes in the
optimiser. This module keeps the run what `train.*` says and the checkpoints pickle-free:

- `check_and_fill`: the engine's gradient clipping and accumulation come from `train.max_grad_norm` and
  `train.gradient_accumulation_steps` (a different value in the accelerate config is refused, not silently
  used); stages other than 1 and 2 are refused (ZeRO-3 shards the weights themselves, which EMA and
  `save_pretrained` read whole; stage 0 keeps its optimiser state in another layout);
- `autocast`: the engine casts the trained weights to bf16/fp16 and accelerate autocasts only outside
  DeepSpeed, so without it every op of the loss (norms, softmax, the MSE) would run in half precision; under
  `torch.autocast` they run in fp32 as in accelerate's own mixed precision (the stages cast their inputs to
  their weights' dtype either way);
- `save_partition` / `load_partition`: each process's slice of the optimiser (fp32 masters, Adam moments) as
  safetensors + JSON (`zero-<process>.*`), since the ZeRO optimiser's `state_dict` is per process and nested.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pcdms.errors import UserError

# Kept from the live optimiser on load: an object (the loss scaler, whose scale is saved as a number) and a
# layout table DeepSpeed recomputes from the model.
_LIVE_KEYS = ("loss_scaler", "param_slice_mappings")


def plugin(accelerator: Any) -> Any | None:
    """The DeepSpeed plugin of this run, or None when it does not run under DeepSpeed."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    return accelerator.state.deepspeed_plugin


def check_and_fill(accelerator: Any, max_grad_norm: float, gradient_accumulation_steps: int) -> None:
    """Before `accelerator.prepare`: make the DeepSpeed config follow the train config (see module docstring)."""
    ds_plugin = plugin(accelerator)
    if ds_plugin is None:
        return
    if ds_plugin.zero_stage not in (1, 2):
        raise UserError(
            f"the accelerate config asks for DeepSpeed ZeRO stage {ds_plugin.zero_stage}; pcdms trains with stage 1 "
            "or 2 (ZeRO-3 shards the weights, which EMA and checkpoints read whole; stage 0 keeps another optimiser "
            "state than the one pcdms checkpoints): use configs/accelerate/deepspeed_zero2.yaml"
        )
    config = ds_plugin.deepspeed_config
    wanted = {"gradient_clipping": float(max_grad_norm), "gradient_accumulation_steps": gradient_accumulation_steps}
    train_key = {"gradient_clipping": "train.max_grad_norm",
                 "gradient_accumulation_steps": "train.gradient_accumulation_steps"}
    for key, value in wanted.items():
        given = config.get(key, "auto")
        if given == "auto":
            config[key] = value
        elif float(given) != float(value):
            raise UserError(
                f"the DeepSpeed config sets {key}={given} but {train_key[key]}={value}: remove {key} from the "
                f"accelerate config (pcdms fills it from {train_key[key]}) or set the two alike"
            )


def autocast(accelerator: Any) -> contextlib.AbstractContextManager:
    """torch.autocast in the engine's half precision under DeepSpeed bf16/fp16, else a no-op."""
    ds_plugin = plugin(accelerator)
    if ds_plugin is None:
        return contextlib.nullcontext()
    config = ds_plugin.deepspeed_config
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if str(config.get(key, {}).get("enabled", False)).lower() == "true":
            return torch.autocast(accelerator.device.type, dtype=dtype)
    return contextlib.nullcontext()


def _files(folder: Path, process: int) -> tuple[Path, Path]:
    return folder / f"zero-{process}.safetensors", folder / f"zero-{process}.json"


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A nested state -> JSON, tensors moved into `tensors` under their path; dict key types are kept."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {"tensor": path}
    if isinstance(value, dict):
        return {"dict": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"cannot store {type(value).__name__} at {path} without pickling")


def _decode(node: dict, tensors: dict[str, torch.Tensor]) -> Any:
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "dict" in node:
        return {k: _decode(v, tensors) for k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, tensors) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, tensors) for v in node["tuple"])
    return node["value"]


def save_partition(folder: Path, optimizer: Any, process: int) -> None:
    """This process's ZeRO optimiser slice -> `zero-<process>.safetensors` + `.json` (every process calls it)."""
    state = optimizer.optimizer.state_dict()  # the ZeRO optimiser under accelerate's wrapper
    scaler = state.get("loss_scaler")
    kept = {k: v for k, v in state.items() if k not in _LIVE_KEYS}
    tensors: dict[str, torch.Tensor] = {}
    info = {"state": _encode(kept, "zero", tensors), "loss_scale": float(getattr(scaler, "cur_scale", 1.0))}
    tensor_file, json_file = _files(folder, process)
    save_file(tensors, str(tensor_file))
    json_file.write_text(json.dumps(info))


def load_partition(folder: Path, optimizer: Any, process: int, num_processes: int) -> None:
    """Inverse of `save_partition` for this process (resume with the same number of processes)."""
    tensor_file, json_file = _files(folder, process)
    if not tensor_file.is_file():
        raise UserError(f"{folder} has no {tensor_file.name}: it was not written by a DeepSpeed run of "
                        f"{num_processes} processes; resume with the launch settings that wrote it")
    info = json.loads(json_file.read_text())
    state = _decode(info["state"], load_file(str(tensor_file)))
    zero_optimizer = optimizer.optimizer
    counts = state.get("partition_count")
    if any(count != num_processes for count in (counts if isinstance(counts, list) else [counts])):
        raise UserError(f"{folder} was written by a DeepSpeed run of {counts} processes, not {num_processes}: "
                        "resume with the same number of processes")
    state.update({k: getattr(zero_optimizer, f"_{k}" if k == "param_slice_mappings" else k, None)
                  for k in _LIVE_KEYS})
    states = [state if i == process else None for i in range(num_processes)]  # ZeRO reads its own rank's entry
    zero_optimizer.load_state_dict(states, load_optimizer_states=True, load_from_fp32_weights=True)
    if hasattr(zero_optimizer.loss_scaler, "cur_scale"):
        zero_optimizer.loss_scaler.cur_scale = info["loss_scale"]
