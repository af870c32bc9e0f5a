"""Diffusion machinery shared by the three stages (paper Sec. 3.1, Eq. 1-2; REFERENCE.md Sec. 1).

- `make_scheduler`: the training `DDPMScheduler` and the inference schedulers (DDIM, UniPC, DDPM, Euler,
  DPM-Solver++, UnCLIP) built from the same betas and prediction type, so any of them samples any stage.
- `add_noise` / `training_target`: noisy inputs and the regression target (noise, x0 or v).
- `drop_conditions`: independent per-sample, per-condition dropout for classifier-free guidance training.
- `Guidance`: classifier-free guidance `uncond + w * (cond - uncond)` (paper Eq. 2, 4, 6, 8), the two halves
  batched into ONE model call, with the conditions concatenated once per sampling call, and the optional
  rescale of Lin et al. 2024 (diffusers' `guidance_rescale`).
- `sample_loop`: the single sampling loop of every stage (k-diffusion style: the denoiser is an argument and
  conditioning is closed over by the caller), optionally guided only on an interval of its steps
  (`in_guidance_interval`; Kynkaanniemi et al. 2024, "Applying guidance in a limited interval improves sample
  and distribution quality"): outside it a step runs the conditional branch alone, B rows instead of 2B.

Timestep spacing has two conventions (`pcdms.recipes`):
- "trailing" (this project's recipe): the first step starts at t = T - 1, where the input is pure noise, and
  the loop ends at a clean sample (DDIM `set_alpha_to_one`, zero final sigma), so an exact denoiser returns
  exactly x0;
- "authors": what the authors' schedulers did, built `from_config` on the SD-2.1-base scheduler config under
  diffusers 0.24: `steps_offset=1`, each scheduler's own default spacing (DDIM/DDPM "leading", UniPC/DPM/Euler
  "linspace"), DDIM without `set_alpha_to_one`, and multistep solvers ending at sigma(t=0), not at 0.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UnCLIPScheduler,
    UniPCMultistepScheduler,
)

from pcdms.config import ScheduleConfig
from pcdms.errors import UserError
from pcdms.recipes import FULL_INTERVAL

Generator = torch.Generator | Sequence[torch.Generator] | None
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# callback(step index, timestep, latents after the step, predicted x0 at this step)
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]

SCHEDULERS = ("ddim", "unipc", "ddpm", "euler", "dpm", "unclip")
Spacing = Literal["trailing", "authors"]


def make_scheduler(name: str, schedule: ScheduleConfig, clip_range: float | None = None,
                   spacing: Spacing = "trailing") -> Any:
    """A diffusers scheduler `name` (one of SCHEDULERS) over the betas of `schedule`.

    `ddpm` is also the training scheduler (`add_noise`, `get_velocity`). Sample clipping is off unless
    `clip_range` is given (ddim, ddpm, unclip): VAE latents and normalised CLIP embeddings are not confined
    to a range, pixel-like latents (space-to-depth) are. `unclip` is the Kandinsky-2.2 prior's sampler
    (ancestral, `fixed_small_log` variance, x0 clipped to +-10 unless `clip_range` says otherwise; its own
    timesteps 999, 946, ..., 0 whatever the spacing). `spacing`: see the module docstring.
    """
    if name not in SCHEDULERS:
        raise UserError(f"unknown scheduler '{name}': use one of {', '.join(SCHEDULERS)}")
    if clip_range is not None and name not in ("ddim", "ddpm", "unclip"):
        raise UserError(f"sample.latent_clip works with the ddim, ddpm and unclip schedulers, not '{name}'")
    if name == "unclip":
        return _unclip(schedule, clip_range)
    clip = {"clip_sample": clip_range is not None, "clip_sample_range": clip_range or 1.0}
    common: dict[str, Any] = dict(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_schedule=schedule.beta_schedule,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        prediction_type=schedule.prediction_type,
    )
    authors = spacing == "authors"
    if authors:  # from_config on SD-2.1-base's scheduler config: steps_offset 1, each class's default spacing
        common.update(steps_offset=1)
    else:
        common.update(timestep_spacing="trailing")
    final = "sigma_min" if authors else "zero"
    if name == "ddpm":
        return DDPMScheduler(**common, **clip)
    if name == "ddim":
        return DDIMScheduler(**common, **clip, set_alpha_to_one=not authors)
    if name == "unipc":
        return UniPCMultistepScheduler(**common, final_sigmas_type=final)
    if name == "dpm":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", final_sigmas_type=final)
    return EulerDiscreteScheduler(**common)


def _unclip(schedule: ScheduleConfig, clip_range: float | None) -> UnCLIPScheduler:
    if schedule.beta_schedule != "squaredcos_cap_v2" or schedule.prediction_type not in ("sample", "epsilon"):
        raise UserError("the unclip scheduler needs a squaredcos_cap_v2 schedule predicting 'sample' or 'epsilon' "
                        f"(the prior's), not {schedule.beta_schedule}/{schedule.prediction_type}")
    return UnCLIPScheduler(num_train_timesteps=schedule.num_train_timesteps, variance_type="fixed_small_log",
                           clip_sample=True, clip_sample_range=10.0 if clip_range is None else clip_range,
                           prediction_type=schedule.prediction_type)


def randn(
    shape: Sequence[int], generator: Generator = None, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of `shape`; a list of generators draws sample i from generator i.

    One generator per sample makes a batch reproduce the same samples as single calls with those seeds.
    Noise is drawn on the generator's device and then moved, so CPU seeds give the same noise everywhere.
    """
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    parts = [randn((1, *shape[1:]), g, device, dtype) for g in generator]
    return torch.cat(parts)


def _first(generator: Generator) -> torch.Generator | None:
    """The generator for whole-batch draws (timesteps, dropout) when a list was given."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return generator[0]


def sample_timesteps(batch: int, num_train_timesteps: int, generator: Generator, device: torch.device) -> torch.Tensor:
    """Uniform training timesteps, int64 (batch,) in [0, num_train_timesteps)."""
    gen = _first(generator)
    draw_on = gen.device if gen is not None else device
    return torch.randint(0, num_train_timesteps, (batch,), generator=gen, device=draw_on).to(device)


def make_noise(like: torch.Tensor, noise_offset: float, generator: Generator) -> torch.Tensor:
    """Training noise shaped like `like`, with offset noise (crosslabs.org "diffusion with offset noise").

    The offset is one Gaussian per sample and channel for images (B, C, 1, 1) and one per sample for vectors
    (B, 1), as in the authors' code for (B, 1, D) embeddings.
    """
    noise = randn(like.shape, generator, like.device, like.dtype)
    if noise_offset:
        shape = like.shape[:2] + (1,) * (like.ndim - 2) if like.ndim > 2 else (like.shape[0], 1)
        noise = noise + noise_offset * randn(shape, _first(generator), like.device, like.dtype)
    return noise


def training_target(scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the network regresses for `scheduler.config.prediction_type`: noise, x0 (`sample`) or v."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return clean
    if kind == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {kind!r}")


def add_noise(scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, for any tensor rank (B, ...)."""
    return scheduler.add_noise(clean, noise, timesteps)


def drop_conditions(
    conditions: Mapping[str, torch.Tensor], prob: float, generator: Generator = None
) -> dict[str, torch.Tensor]:
    """Zero each condition of each sample independently with probability `prob` (classifier-free training).

    Every tensor is (B, ...); a dropped entry becomes zeros, the null input `Guidance` gives the
    unconditional branch. The draws come from `generator` in the order of `conditions`' keys.
    """
    if prob <= 0:
        return dict(conditions)
    gen = _first(generator)
    out = {}
    for name, value in conditions.items():
        draw = torch.rand(value.shape[0], generator=gen, device=gen.device if gen is not None else value.device)
        keep = (draw >= prob).to(value.device, value.dtype)
        out[name] = value * keep.view(-1, *([1] * (value.ndim - 1)))
    return out


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance `uncond + scale * (cond - uncond)` (paper Eq. 2, 4, 6, 8; the authors' form).

    `above_one`: on only when scale > 1, as in the authors' (diffusers') pipelines, where any scale <= 1
    runs the conditional model alone; otherwise (this project's recipe) on whenever scale != 1, so scale 0
    gives the unconditional model. `rescale` > 0 applies `rescale_guidance` (diffusers' `guidance_rescale`).
    When on, `batch` concatenates [uncond, cond] ONCE per sampling call and each step is one model call on
    (2B, ...); the conditions themselves are whatever the model's denoiser takes (already projected).
    """

    scale: float
    above_one: bool = False
    rescale: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.scale > 1.0 if self.above_one else self.scale != 1.0

    def batch(self, cond: Mapping[str, Any], uncond: Mapping[str, Any]) -> dict[str, Any]:
        """The conditions of every step: cond alone, or [uncond; cond] per entry (None entries stay None)."""
        if not self.enabled:
            return dict(cond)
        if set(cond) != set(uncond):
            raise ValueError(f"cond and uncond must name the same inputs, got {sorted(cond)} and {sorted(uncond)}")
        return {k: None if cond[k] is None else torch.cat([uncond[k], cond[k]]) for k in cond}

    def __call__(self, model_fn: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor,
                 conditions: Mapping[str, Any]) -> torch.Tensor:
        """The guided output at (x, t), with `conditions` from `batch`."""
        if not self.enabled:
            return model_fn(x, t, **conditions)
        t2 = torch.cat([t, t]) if t.ndim == 1 else t
        out_uncond, out_cond = model_fn(torch.cat([x, x]), t2, **conditions).chunk(2)
        out = out_uncond + self.scale * (out_cond - out_uncond)
        return rescale_guidance(out, out_cond, self.rescale) if self.rescale else out


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """`rescale * guided * std(cond) / std(guided) + (1 - rescale) * guided`, std over all but the batch dim
    (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are Flawed", Sec. 3.4; the formula of
    diffusers' `guidance_rescale`, which the authors' stage-3 pipeline applies)."""
    dims = list(range(1, cond.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return rescale * rescaled + (1.0 - rescale) * guided


def in_guidance_interval(step: int, steps: int, interval: Sequence[float]) -> bool:
    """Whether step `step` of `steps` (0 = the first, noisiest step) lies in `interval` = (lo, hi), fractions of
    the trajectory: step i starts i/steps of the way, and is guided when lo <= i/steps < hi. So (0, 1) guides
    every step, (0, 0.5) of 20 steps the first 10, and an interval with lo == hi none."""
    low, high = interval
    return low <= step / steps < high


def predicted_x0(scheduler: Any, model_input: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 implied by a network output at timestep t, from the variance-preserving `model_input` x_t."""
    abar = scheduler.alphas_cumprod.to(model_input.device, torch.float32)[int(t)]
    shape = (-1,) + (1,) * (model_input.ndim - 1)
    a, s = abar.sqrt().to(output.dtype).view(shape), (1 - abar).sqrt().to(output.dtype).view(shape)
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return output
    if kind == "epsilon":
        return (model_input - s * output) / a
    return a * model_input - s * output  # v_prediction


def _step_kwargs(scheduler: Any, generator: Generator) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in params and generator is not None else {}


def _takes_prev_timestep(scheduler: Any) -> bool:
    """UnCLIP's step needs the next timestep of the (unevenly spaced) schedule, or None at the last step."""
    return "prev_timestep" in inspect.signature(scheduler.step).parameters


def steps_run(num_inference_steps: int, strength: float = 1.0) -> int:
    """How many of `num_inference_steps` a sampling loop runs when it starts `strength` of the way up (image to
    image): round(strength * steps), at least one; all of them at strength 1."""
    return num_inference_steps if strength >= 1.0 else max(1, round(strength * num_inference_steps))


@torch.inference_mode()
def sample_loop(
    denoise_fn: DenoiseFn,
    scheduler: Any,
    latents: torch.Tensor,
    num_inference_steps: int,
    generator: Generator = None,
    callback: StepCallback | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
    finish_at_x0: bool = True,
    conditional_fn: DenoiseFn | None = None,
    guidance_interval: Sequence[float] = FULL_INTERVAL,
) -> torch.Tensor:
    """Run `scheduler` from standard-normal `latents` (B, ...) down to a clean sample of the same shape.

    `denoise_fn(x_t, t)` gets the scheduler-scaled input and a 0-d timestep and returns the network output
    in the scheduler's prediction type (guidance happens inside it). `generator` feeds stochastic steps
    (DDPM, Euler with noise, UnCLIP's variance noise: never the global RNG). `callback(i, t, latents, x0)`
    sees every step. The result is the last step's clean estimate where the scheduler reports one (DDIM,
    DDPM, Euler) and `finish_at_x0`, else the scheduler's final sample (the authors' loops).

    `strength` < 1 (with `init`, a clean sample shaped like `latents`) starts part-way, image-to-image
    style (SDEdit; diffusers' img2img pipelines): `init` noised with `latents` to the timestep
    `strength` of the way up, then only the remaining round(strength * steps) steps run.

    `conditional_fn` (same signature; the conditional branch alone, B rows where a guided `denoise_fn` runs
    2B) replaces `denoise_fn` on the steps outside `guidance_interval` (`in_guidance_interval`, counted over
    the steps that run); without it every step calls `denoise_fn`.
    """
    if num_inference_steps < 1:
        raise UserError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if not 0.0 < strength <= 1.0:
        raise UserError(f"strength must be in (0, 1], got {strength}")
    if strength < 1.0 and init is None:
        raise ValueError("strength < 1 needs `init`, the sample to start from")
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    timesteps = scheduler.timesteps
    if strength < 1.0:
        timesteps = timesteps[num_inference_steps - steps_run(num_inference_steps, strength):]
        if hasattr(scheduler, "set_begin_index"):  # multistep schedulers index their sigmas by step
            scheduler.set_begin_index(num_inference_steps - len(timesteps))
        x = scheduler.add_noise(init.to(latents), latents, timesteps[:1].repeat(latents.shape[0]))
    else:
        x = latents * scheduler.init_noise_sigma
    extra = _step_kwargs(scheduler, generator)
    with_prev = _takes_prev_timestep(scheduler)
    last = len(timesteps) - 1
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(x, t)
        guided = conditional_fn is None or in_guidance_interval(i, len(timesteps), guidance_interval)
        output = (denoise_fn if guided else conditional_fn)(model_input, t)
        if with_prev:
            extra["prev_timestep"] = None if i == last else timesteps[i + 1]
        step = scheduler.step(output, t, x, return_dict=True, **extra)
        x0 = getattr(step, "pred_original_sample", None)
        # Finish at the clean estimate: with trailing spacing DDIM's last step lands on t = 0, not on a
        # clean sample, when T is not a multiple of the step count (e.g. 6 steps). Elsewhere they agree.
        x = x0 if finish_at_x0 and i == last and x0 is not None else step.prev_sample
        if callback is not None:
            callback(i, t, x, x0 if x0 is not None else predicted_x0(scheduler, model_input, output, t))
    return x


def as_scheduler(scheduler: str | Any, schedule: ScheduleConfig, spacing: Spacing = "trailing") -> Any:
    """A scheduler from a name (see SCHEDULERS) or a given diffusers scheduler, checked against `schedule`."""
    if isinstance(scheduler, str):
        return make_scheduler(scheduler, schedule, spacing=spacing)
    kind = scheduler.config.prediction_type
    if kind != schedule.prediction_type:
        raise UserError(f"the scheduler predicts '{kind}' but this model was trained for '{schedule.prediction_type}'")
    return scheduler


def denoising_loss(
    model_fn: Callable[..., torch.Tensor],
    scheduler: Any,
    clean: torch.Tensor,
    noise_offset: float,
    generator: Generator = None,
    **conditions: torch.Tensor,
) -> torch.Tensor:
    """MSE between `model_fn(x_t, t, **conditions)` and the training target, one random t per sample.

    `clean` is x0 (B, ...) in the space the model denoises (scaled latents, normalised embeddings).
    """
    noise = make_noise(clean, noise_offset, generator)
    timesteps = sample_timesteps(clean.shape[0], scheduler.config.num_train_timesteps, generator, clean.device)
    noisy = add_noise(scheduler, clean, noise, timesteps)
    prediction = model_fn(noisy, timesteps, **conditions)
    target = training_target(scheduler, clean, noise, timesteps)
    return torch.nn.functional.mse_loss(prediction.float(), target.float())
