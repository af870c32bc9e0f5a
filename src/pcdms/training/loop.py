"""The one training loop for all three PCDMs stages (paper App. B), on accelerate.

AdamW, gradient accumulation and clipping, mixed precision, EMA weights, warm-up then constant learning rate,
a seeded data order, atomic checkpoints that resume at the same step and data position, TensorBoard logs, a
start-up summary (`pcdms.summary`) and progress (`pcdms.progress`: a bar in a terminal, else a line every
`train.log_every` steps or minute with step, loss, learning rate, steps/s, data wait, peak memory and ETA; the
same records in `<run>/logs/progress.jsonl`). Multi-GPU and multi-node runs go through `accelerate launch`;
nothing here is device-specific. Under DeepSpeed ZeRO-2 (`configs/accelerate/deepspeed_zero2.yaml`) the loop
is the same; `pcdms.training.zero` holds what differs (settings from the train config, autocast, optimiser slices).

A checkpoint folder `checkpoint-<step>/` holds `model/` (+ `model_ema/`) in the stage's `save_pretrained` format
and the rest of the training state (optimiser, LR schedule, EMA, gradient scaler, RNG) as safetensors and JSON
(`pcdms.training.checkpoint`; nothing is pickled, so resuming from a folder someone handed you runs none of their code).
It is written as `checkpoint-<step>.tmp` and renamed when complete, so a kill during a save never leaves a
checkpoint that half-loads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pcdms.config import RunConfig, save_config
from pcdms.errors import UserError

CHECKPOINT_PREFIX = "checkpoint-"


class NonFiniteLossError(UserError):
    """The loss became NaN or inf; the run stops and keeps the last good checkpoint."""


def stage_class(stage: str) -> type:
    """The class of a stage (`pcdms.models.STAGES`), imported only when a run starts."""
    from pcdms.models import stage_class as from_models

    return from_models(stage)


class _LossStep(nn.Module):
    """Wraps a stage so DDP sees the training loss as `forward` (gradient sync hooks run on forward)."""

    def __init__(self, stage_model: nn.Module, encoders: Any, embeddings: Any = None) -> None:
        super().__init__()
        self.stage = stage_model
        object.__setattr__(self, "_encoders", encoders)  # frozen: kept out of the module tree and DDP
        object.__setattr__(self, "_embeddings", embeddings)  # frozen prior (`train.prior_embeddings`) or None

    def forward(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        if self._embeddings is not None:  # stage 2 on the prior's embedding, not the target's
            batch = {**batch, "global_embeds": self._embeddings(batch, generator)}
        return self.stage.training_loss(batch, self._encoders, generator)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a `.tmp` folder is an unfinished save and never counts)."""
    found = []
    for path in run_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX) :]
        if path.is_dir() and suffix.isdigit() and (path / "trainer_state.json").exists():
            found.append(path)
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def step_generator(seed: int, step: int, process: int, micro: int, device: torch.device) -> torch.Generator:
    """The noise, timesteps and condition dropout of one micro-batch depend only on (seed, step, process,
    micro-batch), never on global RNG state: a resumed run draws exactly what an uninterrupted one would."""
    generator = torch.Generator(device=device)
    generator.manual_seed(((seed * 1_000_003 + step) * 4099 + process) * 257 + micro)
    return generator


def _ema_update(decay: float) -> Callable[..., None]:
    """EMA step that also averages half-precision weights (DeepSpeed bf16/fp16) into the fp32 EMA copy."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    update = get_ema_multi_avg_fn(decay)

    def averaged(ema_params: list, model_params: list, count: torch.Tensor) -> None:
        update(ema_params, [p.to(e.dtype) for e, p in zip(ema_params, model_params)], count)

    return averaged


def _warmup_then_constant(warmup_steps: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def default_run_dir(cfg: RunConfig, stage: str) -> Path:
    """train.output_dir/<config name>-<stage>: where a run goes without --out."""
    return Path(cfg.train.output_dir) / f"{cfg.name}-{stage}"


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    final_model_dir: Path
    last_loss: float


def _resume_step(accelerator: Any, run_dir: Path, resume: bool, model: nn.Module, optimizer: Any,
                 lr_schedule: Any, ema: Any, with_ema: bool) -> int:
    checkpoints = list_checkpoints(run_dir)
    if not resume:
        if checkpoints:
            raise UserError(
                f"{run_dir} already holds checkpoints (newest {checkpoints[-1].name}): pass --resume to continue "
                "that run, or choose another output folder"
            )
        return 0
    if not checkpoints:
        if accelerator.is_main_process:
            print(f"--resume: no checkpoint in {run_dir} yet, so this is a new run from step 0", flush=True)
        return 0
    from pcdms.training import checkpoint, zero

    newest = checkpoints[-1]
    sharded = zero.plugin(accelerator) is not None
    checkpoint.load_training_state(newest, None if sharded else optimizer, lr_schedule, ema, accelerator.scaler,
                                   with_ema=with_ema)
    checkpoint.load_model_weights(model, newest / "model")
    if sharded:
        zero.load_partition(newest, optimizer, accelerator.process_index, accelerator.num_processes)
    checkpoint.load_rng_state(newest, accelerator.process_index)
    step = int(json.loads((newest / "trainer_state.json").read_text())["step"])
    accelerator.print(f"resumed from {checkpoints[-1]} at step {step}")
    return step


def _save_checkpoint(
    accelerator: Any, run_dir: Path, step: int, model: nn.Module, optimizer: Any, lr_schedule: Any, ema: Any,
    keep: int, loss: float,
) -> Path:
    from pcdms.training import checkpoint, zero

    final = run_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = run_dir / f"{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    tmp.mkdir(parents=True, exist_ok=True)
    checkpoint.save_rng_state(tmp, accelerator.process_index)
    sharded = zero.plugin(accelerator) is not None
    if sharded:  # ZeRO: each process holds its own slice of the optimiser
        zero.save_partition(tmp, optimizer, accelerator.process_index)
    accelerator.wait_for_everyone()  # every process's files are in before the folder is completed and renamed
    if accelerator.is_main_process:
        checkpoint.save_training_state(tmp, None if sharded else optimizer, lr_schedule, ema, accelerator.scaler)
        model.save_pretrained(tmp / "model")
        if ema is not None:
            ema.module.save_pretrained(tmp / "model_ema")
        state = {"step": step, "loss": loss, "ema": ema is not None}
        (tmp / "trainer_state.json").write_text(json.dumps(state))  # written last: marks the save complete
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[: -max(keep, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


@dataclass
class _Run:
    """Everything one training run holds, built by `_build_run` before the first step."""

    stage: str
    cfg: RunConfig
    run_dir: Path
    mode: str
    accelerator: Any
    model: Any  # the stage, unwrapped (its parameters are the trained ones)
    encoders: Any
    loader: Any
    params: list
    optimizer: Any
    lr_schedule: Any
    ema: Any  # AveragedModel on the main process when train.ema_decay > 0, else None
    loss_step: Any
    half_precision: Any
    preview: dict | None


def train(
    stage: str,
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | str = True,
) -> TrainResult:
    """Train one stage on `cfg.data.root` and write checkpoints and the final model under `run_dir`.

    The final weights (EMA when `train.ema_decay > 0`) are written to `run_dir/model` in the stage's
    `save_pretrained` format. Raises `NonFiniteLossError` when the loss is NaN/inf. progress: True (a bar in a
    terminal, else lines), False (silent) or a `pcdms.progress` mode.
    """
    run = _build_run(stage, cfg, Path(run_dir) if run_dir is not None else default_run_dir(cfg, stage), progress)
    step = _resume_step(run.accelerator, run.run_dir, resume, run.model, run.optimizer, run.lr_schedule, run.ema,
                        cfg.train.ema_decay > 0)
    step, loss_value = _loop(run, step)
    final_dir = run.run_dir / "model"
    if run.accelerator.is_main_process:
        (run.ema.module if run.ema is not None else run.model).save_pretrained(final_dir)
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    return TrainResult(run_dir=run.run_dir, final_step=step, final_model_dir=final_dir, last_loss=loss_value)


def _build_run(stage: str, cfg: RunConfig, run_dir: Path, progress: bool | str) -> _Run:
    """The accelerator, the stage and the encoders its loss runs, the data, optimiser, schedule and EMA,
    all prepared; the resolved config written to `run_dir` and the start-up summary printed."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from torch.optim.swa_utils import AveragedModel

    from pcdms.training import zero
    from pcdms.models.encoders import build_encoders
    from pcdms.progress import quiet_library_bars, resolve_mode

    model_class = stage_class(stage)
    tc = cfg.train
    if cfg.data.root is None:
        raise UserError("data.root is not set: pass data.root=DIR (`pcdms data synth --out DIR` makes a dataset)")
    if stage == "refine" and cfg.data.coarse_dir is None:
        raise UserError(
            "stage 3 trains on stage-2 images of the training pairs: run `pcdms export-coarse` with the trained "
            "inpainting model, then pass data.coarse_dir=<its --out>"
        )
    if tc.prior_embeddings is not None:
        from pcdms.training.prior_embeds import PriorEmbeddings

        PriorEmbeddings.check(stage, cfg)
    accelerator = Accelerator(
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        mixed_precision=tc.mixed_precision,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=tc.seed),
        step_scheduler_with_optimizer=False,  # stepped by hand once per optimiser step (warm-up in those steps)
    )
    set_seed(tc.seed, device_specific=True)
    mode = resolve_mode(progress)
    quiet_library_bars(mode, accelerator.is_main_process)
    if accelerator.is_main_process:
        save_config(cfg, run_dir)

    model = model_class(getattr(cfg, stage))
    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    encoders = build_encoders(cfg.encoders, model_class.encoder_roles).to(accelerator.device)  # only what it runs
    if cfg.train.cache_encoder_outputs:
        encoders = encoders.cached()
    embeddings = None
    if tc.prior_embeddings is not None:
        embeddings = PriorEmbeddings.load(cfg, encoders, accelerator.device)
    loader = _loader(stage, cfg, run_dir, accelerator, mode)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
        eps=tc.adam_epsilon, weight_decay=tc.weight_decay,
    )
    # Stepped by hand once per optimiser step, so warm-up is counted in optimiser steps on any number of GPUs.
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_constant(tc.warmup_steps))
    # EMA weights live on the main process only (it alone saves and previews them), in fp32, copied before
    # `prepare` (DeepSpeed bf16/fp16 casts the trained weights to half precision there).
    ema = None
    if tc.ema_decay > 0 and accelerator.is_main_process:
        ema = AveragedModel(model, multi_avg_fn=_ema_update(tc.ema_decay), use_buffers=True).to(accelerator.device)
    zero.check_and_fill(accelerator, tc.max_grad_norm, tc.gradient_accumulation_steps)
    loss_step = _LossStep(model, encoders, embeddings)
    loss_step, optimizer, loader, lr_schedule = accelerator.prepare(loss_step, optimizer, loader, lr_schedule)
    model = accelerator.unwrap_model(loss_step).stage
    half_precision = zero.autocast(accelerator)  # DeepSpeed bf16/fp16 only: accelerate autocasts the rest
    if accelerator.is_main_process:
        accelerator.init_trackers("pcdms")
    preview = None
    if tc.sample_every > 0 and accelerator.is_main_process:
        from pcdms.training.previews import preview_batch

        preview = preview_batch(cfg, stage, encoders=encoders)
    return _Run(stage, cfg, run_dir, mode, accelerator, model, encoders, loader, params, optimizer, lr_schedule,
                ema, loss_step, half_precision, preview)


def _loader(stage: str, cfg: RunConfig, run_dir: Path, accelerator: Any, mode: str) -> Any:
    """The training pairs, shuffled in batches of train.batch_size per process; the start-up summary."""
    from torch.utils.data import DataLoader

    from pcdms.data.dataset import PairDataset
    from pcdms.progress import say
    from pcdms.summary import training_summary

    tc = cfg.train
    dataset = PairDataset(
        cfg.data.root, cfg.data.train_split, cfg.data.height, cfg.data.width, flip_prob=cfg.data.flip_prob,
        format=cfg.data.format, coarse_dir=cfg.data.coarse_dir if stage == "refine" else None, seed=tc.seed,
        cache_mb=cfg.data.cache_mb, skeleton=cfg.data.skeleton, recolor_prob=cfg.data.recolor_prob,
    )
    global_batch = tc.batch_size * accelerator.num_processes
    if len(dataset) < global_batch:
        raise UserError(
            f"{cfg.data.root} split '{cfg.data.train_split}' has {len(dataset)} pairs, fewer than one batch "
            f"({tc.batch_size} x {accelerator.num_processes} processes): lower train.batch_size"
        )
    if mode != "off" and accelerator.is_main_process:
        say(training_summary(stage, cfg, dataset, run_dir, accelerator.device, accelerator.num_processes), mode)
    workers = cfg.data.num_workers
    # persistent workers keep their image caches from epoch to epoch (the epoch reaches them: PairDataset)
    return DataLoader(
        dataset, batch_size=tc.batch_size, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, prefetch_factor=cfg.data.prefetch_factor if workers > 0 else None,
        pin_memory=accelerator.device.type == "cuda",
    )


def _loop(run: _Run, step: int) -> tuple[int, float]:
    """Optimiser steps from `step` to train.max_steps, with logging, checkpoints and previews on the way;
    returns the final step and its loss."""
    from pcdms.progress import Progress

    tc, accelerator, loss_step = run.cfg.train, run.accelerator, run.loss_step
    batches_per_epoch = len(run.loader)
    epoch, skip = divmod(step * tc.gradient_accumulation_steps, batches_per_epoch)
    last_good = list_checkpoints(run.run_dir)[-1] if step else None
    loss_value = math.nan
    bar = Progress(tc.max_steps, f"train {run.stage}", "step", run.mode, initial=step, every_steps=tc.log_every,
                   jsonl=run.run_dir / "logs" / "progress.jsonl", enabled=accelerator.is_main_process,
                   memory_device=accelerator.device)
    micro = 0
    while step < tc.max_steps:
        run.loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(run.loader, skip) if skip else run.loader
        skip = 0
        for batch in bar.timed(batches):
            with accelerator.accumulate(loss_step):
                generator = step_generator(tc.seed, step, accelerator.process_index, micro, accelerator.device)
                micro = (micro + 1) % tc.gradient_accumulation_steps
                with run.half_precision:
                    loss = loss_step(batch, generator)
                if not bool(torch.isfinite(accelerator.gather(loss.detach().float().reshape(1))).all()):
                    bar.close()
                    kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
                    raise NonFiniteLossError(
                        f"training loss became {loss.item()} at step {step + 1}; stopped, {kept}. "
                        "Lower train.learning_rate, raise train.warmup_steps or use mixed_precision=no"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and tc.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(run.params, tc.max_grad_norm)
                run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            run.lr_schedule.step()
            step += 1
            loss_value = float(accelerator.reduce(loss.detach().float(), reduction="mean"))
            bar.update(1, loss=loss_value, lr=run.lr_schedule.get_last_lr()[0])
            last_good = _after_step(run, step, loss_value) or last_good
            if step >= tc.max_steps:
                break
        epoch += 1
    bar.close()
    return step, loss_value


def _after_step(run: _Run, step: int, loss_value: float) -> Path | None:
    """What follows an optimiser step: EMA, logs, a checkpoint (its folder returned) and a preview when due."""
    tc, accelerator = run.cfg.train, run.accelerator
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    if step % tc.log_every == 0 or step == tc.max_steps:
        accelerator.log({"loss": loss_value, "lr": run.lr_schedule.get_last_lr()[0]}, step=step)
    saved = None
    if step % tc.checkpoint_every == 0 or step == tc.max_steps:
        saved = _save_checkpoint(accelerator, run.run_dir, step, run.model, run.optimizer, run.lr_schedule, run.ema,
                                 tc.keep_checkpoints, loss_value)
    if run.preview is not None and (step % tc.sample_every == 0 or step == tc.max_steps):
        from pcdms.training.previews import write_preview

        scalars = write_preview(run.stage, run.ema.module if run.ema is not None else run.model, run.encoders,
                                run.preview, run.cfg, run.run_dir / "samples" / f"step-{step:07d}.png")
        accelerator.log(scalars, step=step)
    return saved
