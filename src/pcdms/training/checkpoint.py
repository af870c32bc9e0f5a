"""Training state as data only: tensors in safetensors, everything else in JSON. Nothing is unpickled.

accelerate's `save_state` pickles the optimiser, the LR schedule, registered objects and the RNG states
(`optimizer.bin`, `custom_checkpoint_<i>.pkl`, `random_states_<i>.pkl`) and `load_state` reads them with
`weights_only=False`, so resuming from a run folder someone handed you could run their code. A PCDMs
checkpoint folder instead holds, beside `model/` and `model_ema/` (the stage's `save_pretrained` format):

- `training_state.safetensors`: the optimiser's per-parameter tensors (`optimizer.<param>.<name>`) and the
  EMA model's tensors including its `n_averaged` count (`ema.<key>`);
- `training_state.json`: the optimiser's parameter groups and non-tensor state, the LR schedule's
  `state_dict`, the mixed-precision gradient scaler's `state_dict`;
- `rng-<process>.safetensors` + `rng-<process>.json`: each process's torch CPU/CUDA generator states, and
  numpy's and Python's generator states.

Resuming reads only these files; any `.pkl`/`.bin` in the folder is never opened. A checkpoint without
them (written by an older pcdms through accelerate) is refused with what to do instead.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pcdms.errors import UserError

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
FORMAT = 2  # 1: accelerate's pickled state (refused on resume)


def _rng_files(folder: Path, process: int) -> tuple[Path, Path]:
    return folder / f"rng-{process}.safetensors", folder / f"rng-{process}.json"


def save_rng_state(folder: Path, process: int) -> None:
    """This process's generator states: torch (CPU and every CUDA device), numpy, Python."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    info = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}
    tensor_file, json_file = _rng_files(folder, process)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tensor_file))
    json_file.write_text(json.dumps(info))


def load_rng_state(folder: Path, process: int) -> None:
    tensor_file, json_file = _rng_files(folder, process)
    if not tensor_file.is_file():
        raise UserError(f"{folder} has no {tensor_file.name}: it was written by a run with more processes; "
                        "resume with the same number of processes")
    tensors, info = _read_tensors(tensor_file), _read_json(json_file)
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = info["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_training_state(folder: Path, optimizer: Any | None, lr_schedule: Any, ema: Any | None,
                        scaler: Any | None) -> None:
    """Optimiser, LR schedule, EMA and gradient scaler (main process only; they are the same everywhere).

    optimizer None: its state is saved elsewhere (DeepSpeed ZeRO: one slice per process, `pcdms.training.zero`).
    """
    tensors: dict[str, torch.Tensor] = {}
    opt = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": None}
    scalars: dict[str, dict[str, Any]] = {}
    for param, state in opt["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param), {})[name] = value
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    info = {
        "format": FORMAT,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars, "params": sorted(opt["state"])},
        "lr_schedule": lr_schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema": ema is not None,
    }
    save_file(tensors, str(folder / STATE_TENSORS))
    (folder / STATE_JSON).write_text(json.dumps(info))


def load_training_state(folder: Path, optimizer: Any | None, lr_schedule: Any, ema: Any | None, scaler: Any | None,
                        with_ema: bool | None = None) -> None:
    """Inverse of `save_training_state`; a checkpoint that lacks these files is refused (never unpickled).

    optimizer None: restored elsewhere (`pcdms.training.zero`). with_ema: whether the run keeps EMA weights (default:
    `ema is not None`; processes other than the main one keep none but still check the checkpoint agrees).
    """
    if not (folder / STATE_JSON).is_file():
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".pkl", ".bin"))
        raise UserError(
            f"{folder} has no {STATE_JSON}: its training state is pickled "
            f"({', '.join(pickled) or 'accelerate format'}), "
            "which pcdms never loads because unpickling can run code. Start a new run from its model/ weights, "
            "or retrain"
        )
    info, tensors = _read_json(folder / STATE_JSON), _read_tensors(folder / STATE_TENSORS)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise UserError(f"{folder / STATE_JSON}: unknown checkpoint format {found!r}, expected {FORMAT}")
    try:
        _restore(info, tensors, folder, optimizer, lr_schedule, ema, scaler, with_ema)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:  # a damaged or edited file
        raise UserError(f"{folder / STATE_JSON}: damaged training state ({type(err).__name__}: {str(err)[:200]}); "
                        f"resume from an older checkpoint by deleting {folder.name}/, or start again") from None


def _restore(info: dict, tensors: dict[str, torch.Tensor], folder: Path, optimizer: Any | None, lr_schedule: Any,
             ema: Any | None, scaler: Any | None, with_ema: bool | None) -> None:
    """Put a checkpoint's optimiser, schedule, EMA and scaler state back (`load_training_state` checks it)."""
    saved = info["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for param in saved["params"]:
        prefix = f"optimizer.{param}."
        state[param] = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        state[param].update(saved["scalars"].get(str(param), {}))
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in saved["param_groups"] or []]
    if optimizer is not None:
        if saved["param_groups"] is None:
            raise UserError(f"{folder} was written by a DeepSpeed run (its optimiser is in zero-*.safetensors): "
                            "resume it under the same `accelerate launch --config_file ...`")
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    lr_schedule.load_state_dict(info["lr_schedule"])
    if (ema is not None if with_ema is None else with_ema) != bool(info["ema"]):
        raise UserError(f"{folder} was saved {'with' if info['ema'] else 'without'} EMA weights: resume with the "
                        "same train.ema_decay (0 or not)")
    if ema is not None:
        ema.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})
    if scaler is not None and info["scaler"] is not None:
        scaler.load_state_dict(info["scaler"])


def load_model_weights(model: torch.nn.Module, folder: Path) -> None:
    """Copy a checkpoint's `model/model.safetensors` into `model` in place (the optimiser keeps its tensors)."""
    from pcdms.models.io import WEIGHTS_NAME

    state = _read_tensors(folder / WEIGHTS_NAME)
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: unreadable checkpoint file ({err}); resume from an older checkpoint by deleting "
                        f"{path.parent.name}/, or start again") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise UserError(f"{path}: unreadable checkpoint file ({err}); resume from an older checkpoint by deleting "
                        f"{path.parent.name}/, or start again") from None
