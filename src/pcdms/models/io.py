"""Saving and loading PCDMs stage models (REFERENCE.md Sec. 3 for the authors' checkpoint layout).

A saved stage is a folder with two files:
- `config.json`: `{"stage": "prior" | "inpaint" | "refine", "format": 1, "config": <the stage dataclass>}`,
  every `pretrained_path` set to null, so loading never needs the base model it was initialised from;
- `model.safetensors`: the state dict.

`load_authors_checkpoint` reads the authors' released DeepSpeed files (`mp_rank_00_model_states.pt`, weights
under `module`) with `torch.load(weights_only=True)`, never unpickling arbitrary objects. Key rule: stage 1
keys are identical to ours; stages 2 and 3 rename `image_proj_model_p.` to `image_proj.`; every other key
(`unet.*`, `pose_proj.*`) is identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from pcdms import configio
from pcdms.models import diffusion
from pcdms.checkpoints import read_checkpoint
from pcdms.models.diffusion import make_scheduler
from pcdms.errors import UserError
from pcdms.models.blocks import eval_mode, without_pretrained_paths
from pcdms.recipes import Recipe, check_guidance_interval, get_recipe

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

S = TypeVar("S", bound="StageModel")


class StageModel(nn.Module):
    """Base of the three stages: `cfg` (the stage's config dataclass), dtype/device, save and load."""

    stage: ClassVar[str]
    # the frozen encoders its training loss runs (`pcdms.models.encoders.ROLES`)
    encoder_roles: ClassVar[tuple[str, ...]]
    config_class: ClassVar[type]
    authors_key_renames: ClassVar[dict[str, str]] = {}
    cfg: Any

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def enable_gradient_checkpointing(self) -> None:
        """Training recomputes activations in the backward pass (the UNet's blocks; the prior overrides)."""
        self.unet.enable_gradient_checkpointing()

    @property
    def noise_scheduler(self) -> Any:
        """The training `DDPMScheduler` of `cfg.schedule` (built on first use, on the CPU)."""
        if getattr(self, "_noise_scheduler", None) is None:
            with torch.device("cpu"):  # not on "meta" when the model was built for loading
                self._noise_scheduler = make_scheduler("ddpm", self.cfg.schedule)
        return self._noise_scheduler

    def conditional_loss(self, clean: torch.Tensor, conditions: dict[str, torch.Tensor], droppable: tuple[str, ...],
                         generator: diffusion.Generator = None) -> torch.Tensor:
        """The denoising loss of every stage: in training mode each condition named in `droppable` is zeroed
        per sample with probability `cfg.cond_drop_prob`, independently (classifier-free guidance training)."""
        if self.training:
            dropped = diffusion.drop_conditions({k: conditions[k] for k in droppable}, self.cfg.cond_drop_prob,
                                                generator)
            conditions = {**conditions, **dropped}
        return diffusion.denoising_loss(self, self.noise_scheduler, clean.to(self.dtype), self.cfg.noise_offset,
                                        generator, **conditions)

    def guided_sample(
        self,
        scheduler: str | Any,
        cond: dict[str, Any],
        uncond: Callable[[], dict[str, Any]],
        latents: torch.Tensor,
        guidance_scale: float,
        num_inference_steps: int,
        generator: diffusion.Generator = None,
        callback: diffusion.StepCallback | None = None,
        init: torch.Tensor | None = None,
        strength: float = 1.0,
        recipe: str | Recipe = "pcdms",
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] = diffusion.FULL_INTERVAL,
    ) -> torch.Tensor:
        """The one sampling loop of every stage: `diffusion.sample_loop` from `latents` (standard normal) with
        classifier-free guidance batched into one `self.denoise` call per step, in eval mode (restored after).

        `cond`: the stage's prepared conditions (`prepare`: everything that does not depend on the noisy
        latents or the timestep, computed once per call); `uncond()` builds the null ones the same way, only
        when guidance is on. `recipe` (`pcdms.recipes`) sets the scheduler spacing, when guidance is on and
        how the loop ends. `init`/`strength` < 1: start from `init` noised part-way (`diffusion.sample_loop`).
        `guidance_interval` (lo, hi): guidance only on the steps from fraction lo to hi of the trajectory, the
        others run `cond` alone on half the rows (`diffusion.in_guidance_interval`); (0, 1): every step.
        """
        recipe = get_recipe(recipe)
        check_guidance_interval(recipe, guidance_interval)
        sched = diffusion.as_scheduler(scheduler, self.cfg.schedule, recipe.spacing)
        low, high = guidance_interval
        # an empty interval guides no step: the conditional model alone, as guidance scale 1
        guidance = diffusion.Guidance(guidance_scale if low < high else 1.0, recipe.guidance_above_one,
                                      guidance_rescale)
        conditions = guidance.batch(cond, uncond() if guidance.enabled else cond)

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return guidance(self.denoise, x, t, conditions)

        def conditional(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, ...) rows, not 2B
            return self.denoise(x, t, **cond)

        limited = guidance.enabled and tuple(guidance_interval) != diffusion.FULL_INTERVAL
        with eval_mode(self):
            return diffusion.sample_loop(denoise, sched, latents.to(self.device, self.dtype), num_inference_steps,
                                         generator, callback, init, strength, finish_at_x0=recipe.finish_at_x0,
                                         conditional_fn=conditional if limited else None,
                                         guidance_interval=guidance_interval)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` into `folder` (created if needed)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        config = {"stage": self.stage, "format": FORMAT_VERSION,
                  "config": configio.to_dict(without_pretrained_paths(self.cfg))}
        (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME), metadata={"stage": self.stage, "format": str(FORMAT_VERSION)})
        return out

    @classmethod
    def from_pretrained(cls: type[S], folder: str | Path, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None) -> S:
        """Load a folder written by `save_pretrained`; the model comes back in eval mode."""
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise UserError(f"'{folder}' is not a saved PCDMs {cls.stage} model: expected {CONFIG_NAME} and "
                            f"{WEIGHTS_NAME} inside")
        try:
            saved = json.loads(config_path.read_text())
        except (json.JSONDecodeError, RecursionError) as err:
            raise UserError(f"{config_path}: not valid JSON ({str(err)[:200]})") from None
        stage = saved.get("stage") if isinstance(saved, dict) else None
        if stage != cls.stage:
            raise UserError(f"{config_path} holds a '{stage}' model, not a '{cls.stage}' model")
        # the weights are all in the folder: a base-model path in the file is never followed
        cfg = without_pretrained_paths(configio.from_dict(cls.config_class, saved.get("config", {}), prefix=cls.stage))
        with torch.device("meta"):  # no random init: every tensor comes from the file
            model = cls(cfg)
        try:
            state = load_file(str(weights_path), device="cpu")
        except SafetensorError as err:
            raise UserError(f"{weights_path} is damaged or truncated ({err}): copy the folder again, or rerun the "
                            "command that wrote it") from None
        _load_state(model, state, str(weights_path))
        return model.to(device=device, dtype=dtype).eval()

    @classmethod
    def from_authors_names(cls, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict in the authors' key names -> ours (`authors_key_renames`: the one home of the renames)."""
        out = {}
        for key, value in state.items():
            for old, new in cls.authors_key_renames.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            out[key] = value
        return out

    def load_authors_checkpoint(self, path: str | Path) -> None:
        """Load the authors' released weights for this stage (DeepSpeed `.pt` or a safetensors file)."""
        renamed = self.from_authors_names(read_checkpoint(path).state)
        if self.stage != "prior" and any(k.startswith("pose_encoder.") for k in renamed):
            raise UserError(f"{path} holds stage-1 (prior) weights, not {self.stage} weights (a known mix-up in "
                            "the authors' release)")
        with torch.no_grad():
            _check_and_copy(self, renamed, str(path))


def _check_and_copy(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    wrong = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label} {len(keys)} keys, e.g. {', '.join(keys[:3])}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys
        )
        raise UserError(f"{source} does not fit this {type(model).__name__} config: {detail}")
    model.load_state_dict(state, strict=True)


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    ours = model.state_dict()
    if set(ours) != set(state) or any(ours[k].shape != state[k].shape for k in ours):
        _check_and_copy(model, state, source)  # raises with the differences
    model.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{source}: tensors not restored: {left[:3]}")
