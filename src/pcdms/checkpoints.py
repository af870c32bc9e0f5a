"""Reading checkpoint files safely: the tensors of a torch/DeepSpeed `.pt` or a safetensors file, nothing else.

A torch file is opened with `torch.load(weights_only=True)`, which builds tensors and plain containers only.
DeepSpeed classes pickled beside the weights (a config enum, a loss scaler) are read as inert placeholders
that record their arguments and run nothing; any other global (`os.system`, `builtins.eval`, ...) refuses the
whole file before anything is unpickled. Truncated and corrupt files are refused with the file's name.
This module sits below both the stage models (`models/io.py`) and the converter (`models/convert.py`).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pcdms.errors import UserError

AUTHORS_FILE = "mp_rank_00_model_states.pt"
# Globals that may appear beside the weights and are read as inert placeholders (never imported or called).
STAND_IN_PREFIXES = ("deepspeed.",)
SHOW = 8  # names listed per category in an error


def names(keys: list[str]) -> str:
    """The first SHOW of `keys`, comma-separated, and how many more."""
    more = f" and {len(keys) - SHOW} more" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


class _Inert:
    """A DeepSpeed object read from a checkpoint: keeps what the file says and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


@dataclass
class Checkpoint:
    """The weights of a checkpoint file. `ignored`: other top-level entries (name -> type), not weights;
    `stand_ins`: DeepSpeed globals read as inert placeholders."""

    path: Path
    state: dict[str, torch.Tensor]
    ignored: dict[str, str] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading
def find_checkpoint_file(path: str | Path) -> Path:
    """`path` itself, or the DeepSpeed model file inside a checkpoint folder (searched two levels deep)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob(AUTHORS_FILE)) + sorted(path.glob(f"*/{AUTHORS_FILE}")) + sorted(path.glob(f"*/*/{AUTHORS_FILE}"))
        if len(found) == 1:
            return found[0]
        if found:
            raise UserError(f"'{path}' holds several {AUTHORS_FILE} files ({names([str(f) for f in found])}): name one")
        raise UserError(f"'{path}' is a folder without {AUTHORS_FILE}: give the checkpoint file itself")
    raise UserError(f"checkpoint '{path}' not found")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The tensors of a DeepSpeed/torch file (`module` entry or a plain state dict) or a safetensors file.

    Refuses, with a UserError and without running anything, a file that references code, a truncated or
    corrupt file, and a file that holds no tensors.
    """
    file = find_checkpoint_file(path)
    size = file.stat().st_size
    if file.suffix == ".safetensors":
        try:
            return Checkpoint(file, load_file(str(file), device="cpu"))
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise UserError(f"cannot read '{file}' ({size} bytes) as safetensors: {err} (truncated download?)") from None
    stand_ins: list[str] = []
    if zipfile.is_zipfile(file):
        stand_ins = _check_globals(file)
    try:
        with torch.serialization.safe_globals([(_Inert, name) for name in stand_ins]):
            data = torch.load(str(file), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except Exception as err:  # never retried without weights_only
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if code:  # a legacy-format file: its globals are only found while unpickling, and refused there
            raise UserError(f"refused '{file}': it asks to run code when loaded ({code.group(1)}), which a weights "
                            "file never needs; nothing in it was executed") from None
        if not zipfile.is_zipfile(file):
            raise UserError(f"cannot read '{file}' ({size} bytes): it is not a complete torch zip file (truncated "
                            f"or corrupt, e.g. an interrupted download) and not a legacy torch file: {first}") from None
        raise UserError(f"cannot read '{file}' safely as tensors (torch.load weights_only=True): {first}") from None
    state, ignored = _weights_of(data, file)
    return Checkpoint(file, state, ignored, stand_ins)


def _check_globals(file: Path) -> list[str]:
    """The DeepSpeed globals a zip checkpoint names; refuse it when it names any other code."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(file))
    except Exception as err:
        raise UserError(f"cannot read '{file}': its pickle is corrupt or truncated ({err})") from None
    foreign = sorted(n for n in names if not n.startswith(STAND_IN_PREFIXES))
    if foreign:
        raise UserError(f"refused '{file}': it asks to run code when loaded ({', '.join(foreign)}), which a weights "
                        "file never needs; nothing in it was executed. Get the checkpoint from its original source")
    return sorted(names)


def _weights_of(data: Any, file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    ignored: dict[str, str] = {}
    if isinstance(data, Mapping):
        for entry in ("module", "state_dict", "model"):
            if isinstance(data.get(entry), Mapping):
                ignored = {str(k): "DeepSpeed object, read inert" if isinstance(v, _Inert) else type(v).__name__
                           for k, v in data.items() if k != entry}
                data = data[entry]
                break
    if not isinstance(data, Mapping) or not data:
        raise UserError(f"'{file}' holds no state dict (expected a DeepSpeed file with 'module', or a dict of tensors)")
    not_tensors = sorted(str(k) for k, v in data.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise UserError(f"'{file}': the state dict has entries that are not tensors: {names(not_tensors)}")
    _check_backed(data, file)
    keys = [str(k) for k in data]
    prefix = "module." if all(k.startswith("module.") for k in keys) else ""  # a DDP-wrapped model
    return {k.removeprefix(prefix): v for k, v in zip(keys, data.values())}, ignored


def _check_backed(state: Mapping[Any, torch.Tensor], file: Path) -> None:
    """Refuse tensors that claim more data than the file holds: an expanded view of one element
    (`torch.zeros(1).expand(...)`) is a few bytes on disk and any size once copied. Each tensor must fit in its
    own storage, and all of them together in twice the file's storages (weights tied under two names pass)."""
    storages: dict[int, int] = {}
    claimed = 0
    for key, tensor in state.items():
        need = tensor.numel() * tensor.element_size()
        storage = tensor.untyped_storage()
        if need > storage.nbytes():
            raise UserError(f"refused '{file}': tensor '{key}' of shape {tuple(tensor.shape)} claims {need:,} bytes but "
                            f"the file holds {storage.nbytes():,} for it (an expanded view, not weights)")
        storages[storage.data_ptr()] = storage.nbytes()
        claimed += need
    if claimed > 2 * sum(storages.values()):
        raise UserError(f"refused '{file}': its tensors claim {claimed:,} bytes but the file holds "
                        f"{sum(storages.values()):,} (many views of the same data, not weights)")
