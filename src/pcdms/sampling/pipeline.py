"""PCDMsPipeline: source image + target pose -> prior -> inpaint -> refine -> image (paper Fig. 2, Sec. 3).

Inference only. Each encoder runs once per call (CLIP and DINOv2 on the source, the autoencoder on the
masked canvas), guidance is batched (one UNet call per step per stage) and nothing is recomputed between
stages. Any stage can be skipped or fed its input, which gives the paper's ablations (Sec. 4.2):
B1 = inpaint only, B2 = prior + inpaint, B3 = inpaint + refine, full = all three.

Without the prior (B1, B3) stage 2 gets the null global embedding (zeros), which is what it sees for the 10 %
of training batches whose embedding is dropped. Images of any size go in (`pcdms.framing.Fit`): each is padded
to the model's aspect with its own border colour, resized, and the outputs are cropped and resized back, so
they come out at the input's aspect ratio. `batch` runs several pairs through each stage together.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pcdms.config import STAGE_NAMES, RunConfig, SampleConfig, load_model_folder_config
from pcdms.data.canvas import make_canvas, masked_canvas, split_canvas
from pcdms.models.diffusion import randn as diffusion_randn
from pcdms.models.diffusion import steps_run
from pcdms.models.encoders import ROLES, Encoders, build_encoders
from pcdms.errors import UserError
from pcdms.pose.extract import extract_pose
from pcdms.sampling.fastpaths import apply_fast_paths
from pcdms.models.folder import assemble_model, save_random_encoders  # noqa: F401 (save_random_encoders re-exported)
from pcdms.framing import Fit, pose_tensor, to_pil, to_tensor
from pcdms.pose import Pose

ABLATIONS: dict[str, tuple[str, ...]] = {
    "B1": ("inpaint",),
    "B2": ("prior", "inpaint"),
    "B3": ("inpaint", "refine"),
    "full": STAGE_NAMES,
}
# callback(stage, step index, timestep, latents, predicted x0)
PipelineCallback = Callable[[str, int, torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass
class PCDMsOutput:
    """images: final images (refined, or coarse when stage 3 is skipped), at the source's size.
    coarse_images: stage-2 outputs; target_embeds: (N, D) the global embedding stage 2 used (None for zeros);
    process: per sample, a strip of predicted-x0 images over the steps of stages 2 and 3 (paper Fig. 18-19)."""

    images: list[Image.Image]
    coarse_images: list[Image.Image]
    target_embeds: torch.Tensor | None
    process: list[Image.Image] | None = None
    stages_run: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class _Call:
    """One `PCDMsPipeline.batch` call as its stages see it: B pairs (`count`) x `n` samples each."""

    count: int
    n: int
    steps: int
    guidance_scale: float | None
    device: torch.device
    images: list[Image.Image]  # the sources, RGB
    fits: list[Fit]  # each source's fit to the model frame
    unique: list[int]  # each distinct source's first pair
    index: torch.Tensor  # (B,): pair i's row of `source_once`
    source_once: torch.Tensor  # (S, 3, H, W): each distinct source, fitted
    generators: list[torch.Generator | None]
    callback: PipelineCallback | None
    return_process: bool
    process_frames: int
    strips: list[list[torch.Tensor]]  # per sample: the decoded x0 frames of the process picture

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) per pair -> (B * n, ...) per sample."""
        return x.repeat_interleave(self.n, dim=0)

    def noise(self, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        """Standard normal (B * n, *shape): each pair's n rows from its own generator, in the order a single
        call draws them."""
        return torch.cat([diffusion_randn((self.n, *shape), g, self.device, dtype) for g in self.generators])

    def run(self, stage: str, decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
        """A stage's per-call sampler arguments: steps, guidance, the step generator(s) and the step callback,
        which also keeps `process_frames` decoded frames per sample when `decode` is given."""
        if self.count == 1:
            generator = self.generators[0]
        else:
            generator = None if any(g is None for g in self.generators) else [g for g in self.generators
                                                                               for _ in range(self.n)]
        return {"num_inference_steps": self.steps, "guidance_scale": self.guidance_scale, "generator": generator,
                "callback": self._observer(stage, decode)}

    def _observer(self, stage: str, decode: Callable[[torch.Tensor], torch.Tensor] | None) -> Any:
        callback, keep_frames = self.callback, self.return_process and decode is not None
        if callback is None and not keep_frames:
            return None
        keep = set(np.linspace(0, self.steps - 1, self.process_frames).round().astype(int).tolist())

        def on_step(i: int, t: torch.Tensor, latents: torch.Tensor, x0: torch.Tensor) -> None:
            if callback is not None:
                callback(stage, i, t, latents, x0)
            if keep_frames and i in keep:
                for k, image in enumerate(decode(x0)):
                    self.strips[k].append(image.cpu())
        return on_step


class PCDMsPipeline:
    """The three stages and their encoders. `prior` and `refine` may be None (ablations B1/B3, B1/B2)."""

    def __init__(
        self,
        encoders: Encoders,
        inpaint: Any,
        prior: Any = None,
        refine: Any = None,
        height: int = 256,
        width: int = 176,
        sample: SampleConfig | None = None,
        fit: str = "pad",
        skeleton: str = "scaled",
    ) -> None:
        self.encoders, self.prior, self.inpaint, self.refine = encoders, prior, inpaint, refine
        self.stretch = fit == "stretch"
        self.skeleton = skeleton  # how pose renders are drawn (`pcdms.pose.render_skeleton`)
        self.height, self.width = height, width
        self.sample = sample or SampleConfig()
        self.config: RunConfig | None = None  # the run config, when loaded from folders

    def with_sample(self, **changes: Any) -> PCDMsPipeline:
        """This pipeline with other sampling settings (`SampleConfig` fields), for one call: a shallow copy
        that shares the networks, so jobs running side by side never see each other's settings."""
        other = copy.copy(self)
        other.sample = dataclasses.replace(self.sample, **changes)
        if self.config is not None:
            other.config = dataclasses.replace(self.config, sample=other.sample)
        return other

    # ------------------------------------------------------------ loading
    @classmethod
    def from_stages(cls, cfg: RunConfig, inpaint: str | Path, prior: str | Path | None = None,
                    refine: str | Path | None = None, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> PCDMsPipeline:
        """Encoders from `cfg.encoders` and each stage from its `save_pretrained` folder (a training run's
        `model/`); image size and sampling settings from `cfg`."""
        from pcdms.models import stage_class

        folders = {"prior": prior, "inpaint": inpaint, "refine": refine}
        stages = {}
        for name, folder in folders.items():
            if folder is not None and not (Path(folder) / "config.json").is_file():
                raise UserError(f"{name} model folder '{folder}' has no config.json: give a training run's model/ folder")
            stages[name] = None if folder is None else stage_class(name).from_pretrained(folder, device=device, dtype=dtype)
        # CLIP embeds the source for the prior, or a ground-truth target for stage 2 (export-coarse without
        # --prior); the authors' simplified model (no global embedding) and no prior need none
        takes_embedding = stages["prior"] is not None or stages["inpaint"].cfg.global_embed_dim is not None
        need = ROLES if takes_embedding else ("autoencoder", "dino")
        encoders = build_encoders(cfg.encoders, need).to(device, dtype)
        pipe = cls(encoders, stages["inpaint"], stages["prior"], stages["refine"],
                   cfg.data.height, cfg.data.width, cfg.sample, cfg.data.fit, cfg.data.skeleton)
        pipe.config = cfg
        apply_fast_paths(pipe, cfg.sample, dtype)
        return pipe

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, overrides: Sequence[str] = ()) -> PCDMsPipeline:
        """A folder with `config.yaml` (the run config), `inpaint/` and optionally `prior/`, `refine/` (each a
        stage's `save_pretrained` folder) and `encoders/clip`, `encoders/dino` (transformers folders) that
        override the config's encoder paths (how a model with its own small encoders ships). `overrides`:
        dotted `key=value` settings applied last (e.g. `sample.guidance_interval=[0.2,0.8]`)."""
        root = Path(folder)
        if not (root / "config.yaml").is_file():
            raise UserError(f"'{root}' is not a PCDMs model folder: expected {root / 'config.yaml'}")
        encoder_paths = [f"encoders.{name}.pretrained_path={root / 'encoders' / name}"
                     for name in ("clip", "dino") if (root / "encoders" / name / "config.json").is_file()]
        cfg = load_model_folder_config(root, [*encoder_paths, *overrides])
        if not (root / "inpaint" / "config.json").is_file():
            raise UserError(f"'{root}' has no inpaint/ stage: stage 2 is required")
        present = {name: root / name if (root / name / "config.json").is_file() else None for name in ("prior", "refine")}
        return cls.from_stages(cfg, root / "inpaint", present["prior"], present["refine"], device, dtype)

    def embed_image(self, image: Image.Image) -> torch.Tensor:
        """CLIP image embedding (1, D) of an image as the pipeline sees it (fitted to the model frame)."""
        if self.encoders.clip is None:
            raise UserError("this model has no CLIP encoder loaded (it has no prior): it takes no target embedding")
        pixels = self._model_input(image.convert("RGB"))
        return self.encoders.clip(pixels.to(self.encoders.clip.device))

    def stage2_images(self, source_image: Image.Image, target_pose: Pose,
                      source_pose: Pose | None = None) -> dict[str, torch.Tensor]:
        """What stage 2 is given for one pair before any network runs, as `batch` makes it: `source` (1, 3, H, W)
        in [-1, 1] (the input of DINOv2 and CLIP, `encoders.*.pixels`), `masked_canvas` (1, 3, H, 2W) [source |
        black] in [-1, 1] (the autoencoder's input) and `pose_canvas` (1, 3, H, 2W) [source pose | target pose]
        in [0, 1]. The source pose is extracted from the photo when not given."""
        image = source_image.convert("RGB")
        fit = self._fit(*image.size)
        source = self._model_input(image, fit)
        source_pose = source_pose if source_pose is not None else extract_pose(image, "the source image")
        _, source_render, _, target_render = self._pose_inputs([fit], [source_pose], [target_pose])
        return {"source": source, "masked_canvas": masked_canvas(source),
                "pose_canvas": make_canvas(source_render, target_render)}

    def save_pretrained(self, folder: str | Path, cfg: RunConfig) -> Path:
        """Write the folder `from_pretrained` reads (`pcdms.models.folder.assemble_model`, the one writer): each
        stage, `config.yaml`, and the encoders without a local path."""
        root = Path(folder)
        for name in STAGE_NAMES:
            if getattr(self, name) is not None:
                getattr(self, name).save_pretrained(root / name)
        assemble_model(root, cfg, {})
        save_random_encoders(cfg, root, self.encoders)
        return root

    # ------------------------------------------------------------ inference
    @torch.no_grad()
    def __call__(
        self,
        source_image: Image.Image,
        target_pose: Pose | None,
        source_pose: Pose | None = None,
        *,
        stages: Sequence[str] | str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
        target_embeds: torch.Tensor | None = None,
        coarse_image: Image.Image | None = None,
        callback: PipelineCallback | None = None,
        return_process: bool = False,
        process_frames: int = 6,
    ) -> PCDMsOutput:
        """Generate the person of `source_image` in `target_pose`.

        Poses may be in any pixel frame (a dataset's, or another photo's): each is mapped the way its image
        would be. `stages`: an ablation name (B1, B2, B3, full) or stage names, None for every stage this
        pipeline has; `target_embeds` (D,) or (1, D)
        feeds stage 2 instead of the prior; `coarse_image` feeds stage 3 instead of stage 2. One guidance
        scale for every stage overrides the config's per-stage ones.
        """
        return self.batch(
            [source_image], [target_pose], [source_pose], stages=stages, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generators=[generator], num_samples=num_samples,
            target_embeds=None if target_embeds is None else target_embeds.reshape(1, -1),
            coarse_images=None if coarse_image is None else [coarse_image], callback=callback,
            return_process=return_process, process_frames=process_frames)[0]

    @torch.no_grad()
    def batch(
        self,
        source_images: Sequence[Image.Image],
        target_poses: Sequence[Pose | None],
        source_poses: Sequence[Pose | None] | None = None,
        *,
        stages: Sequence[str] | str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generators: Sequence[torch.Generator | None] | None = None,
        num_samples: int = 1,
        target_embeds: torch.Tensor | None = None,
        coarse_images: Sequence[Image.Image] | None = None,
        callback: PipelineCallback | None = None,
        return_process: bool = False,
        process_frames: int = 6,
    ) -> list[PCDMsOutput]:
        """`__call__` for several pairs at once, one output per pair: every stage runs once over all pairs'
        samples (B pairs x `num_samples` rows), which keeps a GPU busy. Pair i draws its noise from
        `generators[i]` in the order a single call would, so with a deterministic scheduler (DDIM, the
        default) each pair's images equal those of `__call__` with that generator. `target_embeds`: (B, D).
        """
        count = len(source_images)
        if count == 0:
            raise UserError("no pairs to generate")
        target_poses = list(target_poses)
        source_poses = list(source_poses) if source_poses is not None else [None] * count
        generators = list(generators) if generators is not None else [None] * count
        if not len(target_poses) == len(source_poses) == len(generators) == count:
            raise ValueError(f"{count} source images need as many target poses, source poses and generators")
        run = self._stages(stages, target_embeds, coarse_images)
        if "inpaint" in run and any(p is None for p in target_poses):
            raise UserError("a target pose is needed to run stage 2")
        if num_inference_steps is not None and num_inference_steps < 1:
            raise UserError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        call = self._call(source_images, generators, num_samples, num_inference_steps, guidance_scale, callback,
                          return_process, process_frames)
        tokens = None
        if "inpaint" in run:
            source_poses = [pose if pose is not None else extract_pose(image, "the source image")
                            for image, pose in zip(call.images, source_poses)]
            poses = self._pose_inputs(call.fits, source_poses, target_poses)
            if "prior" in run:
                target_embeds = self._prior_rows(call, poses)
            elif target_embeds is not None:
                target_embeds = call.rows(target_embeds.reshape(count, -1).to(call.device))
            coarse, tokens = self._inpaint_rows(call, poses, target_embeds)
        else:  # one given coarse image per pair, encoded once and shared by its samples
            coarse = torch.cat([self._model_input(image.convert("RGB")) for image in coarse_images]).to(call.device)
        final = self._refine_rows(call, coarse, tokens, coarse_images is not None) if "refine" in run else coarse
        return self._outputs(call, run, final, coarse if coarse_images is None else call.rows(coarse), target_embeds)

    # ------------------------------------------------------------ the steps of `batch`
    def _fit(self, width: int, height: int) -> Fit:
        """How an image (or a pose's frame) of `width` x `height` sits in this model's frame."""
        return Fit.of(width, height, self.height, self.width, self.stretch)

    def _model_input(self, image: Image.Image, fit: Fit | None = None) -> torch.Tensor:
        """An RGB image fitted to the model frame (`fit`, else its own): (1, 3, H, W) in [-1, 1]."""
        fit = fit if fit is not None else self._fit(*image.size)
        return to_tensor(fit.image_in(image, self.height, self.width))

    def _call(self, source_images: Sequence[Image.Image], generators: list, num_samples: int, steps: int | None,
              guidance_scale: float | None, callback: PipelineCallback | None, return_process: bool,
              process_frames: int) -> _Call:
        """The pairs fitted to the model frame; a source given several times (the frames of an animation) is
        fitted and encoded once: row k of `source_once` is the k-th distinct source, `index[i]` pair i's row."""
        images = [image.convert("RGB") for image in source_images]
        fits = [self._fit(*image.size) for image in images]
        device = self.inpaint.device if self.inpaint is not None else self.refine.device
        slots: dict[int, int] = {}
        slot_of = [slots.setdefault(id(image), len(slots)) for image in source_images]
        unique = [slot_of.index(k) for k in range(len(slots))]  # each distinct source's first pair
        source_once = torch.cat([self._model_input(images[i], fits[i]) for i in unique]).to(device)
        return _Call(len(images), num_samples, steps if steps is not None else self.sample.num_inference_steps,
                     guidance_scale, device, images, fits, unique, torch.tensor(slot_of, device=device), source_once,
                     generators, callback, return_process, process_frames,
                     [[] for _ in range(len(images) * num_samples)])

    def _prior_rows(self, call: _Call, poses: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Stage 1 for every sample: the target embeddings (B * n, D)."""
        source_kp, _, target_kp, _ = poses
        source_embeds = self.encoders.clip(call.source_once.to(self.encoders.clip.device)).to(call.device)[call.index]
        return self.sample_prior(call.rows(source_embeds), call.rows(source_kp), call.rows(target_kp),
                                 call.noise(self.prior.cfg.embed_dim, dtype=self.prior.dtype), **call.run("prior"))

    def _inpaint_rows(self, call: _Call, poses: tuple[torch.Tensor, ...],
                      target_embeds: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2 for every sample: the coarse images (B * n, 3, H, W) and each distinct source's DINOv2
        tokens, which stage 3 reuses."""
        _, source_render, _, target_render = poses
        device = call.device
        once = self.inpaint.encode_conditions(self.encoders, call.source_once, source_render[call.unique].to(device),
                                              target_render[call.unique].to(device))
        global_embeds = (None if not self.inpaint.uses_global_embeds else target_embeds if target_embeds is not None
                         else torch.zeros(call.count * call.n, self.inpaint.cfg.global_embed_dim, device=device))
        masked = call.rows(once["masked_latents"][call.index])
        canvas = self.sample_inpaint(
            masked, call.rows(make_canvas(source_render, target_render).to(device)),
            call.rows(once["image_tokens"][call.index]), global_embeds,
            call.noise(*masked.shape[1:], dtype=self.inpaint.dtype),
            **call.run("inpaint", lambda x: split_canvas(self.encoders.autoencoder.decode(x))[1]))
        return split_canvas(self.encoders.autoencoder.decode(canvas))[1], once["image_tokens"]

    def _refine_rows(self, call: _Call, coarse: torch.Tensor, tokens: torch.Tensor | None,
                     one_per_pair: bool) -> torch.Tensor:
        """Stage 3 for every sample: the final images (B * n, 3, H, W). `coarse` has a row per sample, or one
        per pair (given coarse images, shared by the pair's samples); `tokens`: stage 2's, not recomputed."""
        conditions = self.refine.encode_conditions(self.encoders, call.source_once, coarse, image_tokens=tokens)
        coarse_latents = call.rows(conditions["coarse_latents"]) if one_per_pair else conditions["coarse_latents"]
        refined = self.sample_refine(
            coarse_latents, call.rows(conditions["image_tokens"][call.index]),
            call.noise(*coarse_latents.shape[1:], dtype=self.refine.dtype),
            **call.run("refine", self.encoders.autoencoder.decode))
        return self.encoders.autoencoder.decode(refined)

    def _outputs(self, call: _Call, run: tuple[str, ...], final: torch.Tensor, coarse: torch.Tensor,
                 target_embeds: torch.Tensor | None) -> list[PCDMsOutput]:
        """One output per pair, its images mapped back to the source photo's size."""
        finals, coarses = to_pil(final), to_pil(coarse)
        outputs = []
        for i, fit in enumerate(call.fits):
            mine = slice(i * call.n, (i + 1) * call.n)
            process = None
            if call.return_process:
                process = [to_pil(torch.cat(frames, dim=-1)[None])[0] for frames in call.strips[mine]]
            outputs.append(PCDMsOutput(
                images=[fit.image_out(im) for im in finals[mine]],
                coarse_images=[fit.image_out(im) for im in coarses[mine]],
                target_embeds=None if target_embeds is None else target_embeds[mine],
                process=process,
                stages_run=run,
            ))
        return outputs

    def _pose_inputs(self, fits: Sequence[Fit], source_poses: Sequence[Pose],
                     target_poses: Sequence[Pose]) -> tuple[torch.Tensor, ...]:
        """Keypoints (B, 18, 2) and renders (B, 3, H, W) of the source and target poses in the model frame."""
        h, w = self.height, self.width
        src = [pose_tensor(pose, fit, h, w, self.skeleton) for fit, pose in zip(fits, source_poses)]
        tgt = [pose_tensor(pose, self._fit(pose.width, pose.height), h, w, self.skeleton) for pose in target_poses]
        return (torch.cat([k for k, _ in src]), torch.cat([r for _, r in src]),
                torch.cat([k for k, _ in tgt]), torch.cat([r for _, r in tgt]))

    # ------------------------------------------------------------ one stage on encoded tensors
    def sample_prior(self, source_embeds: torch.Tensor, source_keypoints: torch.Tensor,
                     target_keypoints: torch.Tensor, latents: torch.Tensor, **run: Any) -> torch.Tensor:
        """Stage 1 with this pipeline's sampling settings: the target CLIP embedding (N, D). Inputs as
        `PriorModel.sample`; `latents` (N, D) standard normal; `run`: see `_run`."""
        return self.prior.sample(source_embeds, source_keypoints, target_keypoints, latents=latents,
                                 **self._run("prior", **run))

    def sample_inpaint(self, masked_latents: torch.Tensor, pose_canvas: torch.Tensor, image_tokens: torch.Tensor,
                       global_embeds: torch.Tensor | None, latents: torch.Tensor, **run: Any) -> torch.Tensor:
        """Stage 2 with this pipeline's sampling settings: canvas latents (N, C, h, 2w). Inputs as
        `InpaintModel.sample` (`global_embeds` None for the simplified model); `run`: see `_run`."""
        return self.inpaint.sample(masked_latents, pose_canvas, image_tokens, global_embeds, latents=latents,
                                   **self._run("inpaint", **run))

    def sample_refine(self, coarse_latents: torch.Tensor, image_tokens: torch.Tensor, latents: torch.Tensor,
                      **run: Any) -> torch.Tensor:
        """Stage 3 with this pipeline's sampling settings (strength, guidance rescale): latents (N, C, h, w)."""
        return self.refine.sample(coarse_latents, image_tokens, latents=latents, strength=self.sample.refine_strength,
                                  guidance_rescale=self.sample.refine_guidance_rescale, **self._run("refine", **run))

    def _run(self, stage: str, num_inference_steps: int | None = None, guidance_scale: float | None = None,
             generator: Any = None, callback: Any = None) -> dict[str, Any]:
        """A stage's sampler arguments: the config's steps, guidance, scheduler and recipe unless overridden;
        the guidance interval always the config's."""
        scale = guidance_scale if guidance_scale is not None else getattr(self.sample, f"{stage}_guidance_scale")
        return {"scheduler": self.scheduler_for(stage), "recipe": self.sample.recipe,
                "guidance_interval": self.sample.guidance_interval,
                "num_inference_steps": num_inference_steps if num_inference_steps is not None
                else self.sample.num_inference_steps,
                "guidance_scale": scale, "generator": generator, "callback": callback}

    def scheduler_for(self, stage: str) -> Any:
        """The sampling scheduler of a stage: `sample.prior_scheduler` (or `scheduler`) for the prior,
        `sample.scheduler` with `sample.latent_clip` for the UNets, spaced as `sample.recipe` says."""
        from pcdms.models.diffusion import make_scheduler
        from pcdms.recipes import get_recipe

        spacing = get_recipe(self.sample.recipe).spacing
        schedule = getattr(self, stage).cfg.schedule
        if stage == "prior":
            return make_scheduler(self.sample.prior_scheduler or self.sample.scheduler, schedule, spacing=spacing)
        return make_scheduler(self.sample.scheduler, schedule, self.sample.latent_clip, spacing)

    def plan(self, stages: Sequence[str] | str | None = None, num_inference_steps: int | None = None) -> dict[str, int]:
        """The steps each stage of a call with these arguments runs, in order: what progress bars count.
        Stage 3 runs fewer at `sample.refine_strength` < 1 (`diffusion.steps_run`); a stage the call skips
        (the simplified model's prior) is not listed."""
        steps = num_inference_steps if num_inference_steps is not None else self.sample.num_inference_steps
        return {name: steps_run(steps, self.sample.refine_strength if name == "refine" else 1.0)
                for name in self._stages(stages, None, None)}

    def _stages(self, stages: Sequence[str] | str | None, target_embeds: Any, coarse_images: Any) -> tuple[str, ...]:
        if stages is None:  # every stage this pipeline has (the simplified model: stage 2 alone)
            stages = tuple(name for name in STAGE_NAMES if getattr(self, name) is not None)
        if isinstance(stages, str) and stages in STAGE_NAMES:
            stages = (stages,)
        if isinstance(stages, str):
            if stages not in ABLATIONS:
                raise UserError(f"stages='{stages}' is not one of {', '.join(ABLATIONS)} (or a list of stage names)")
            stages = ABLATIONS[stages]
        unknown = [s for s in stages if s not in STAGE_NAMES]
        if unknown:
            raise UserError(f"unknown stage(s) {unknown}: choose from {', '.join(STAGE_NAMES)}")
        run = tuple(s for s in STAGE_NAMES if s in stages)
        if coarse_images is not None:
            run = tuple(s for s in run if s == "refine")
            if not run:
                raise UserError("coarse_image is given, so only stage 3 can run: include 'refine' in stages")
        elif "inpaint" not in run:
            raise UserError("stage 2 (inpaint) is needed unless a coarse_image is given")
        if target_embeds is not None or (self.inpaint is not None and not self.inpaint.uses_global_embeds):
            run = tuple(s for s in run if s != "prior")  # the simplified model takes no stage-1 embedding
        for name in run:
            if getattr(self, name) is None:
                raise UserError(f"stage '{name}' was asked for but this pipeline has no {name} model")
        return run

    def animate(self, source_image: Image.Image, poses: Sequence[Pose | None], **kwargs: Any) -> Any:
        """The person of `source_image` in each pose of a sequence, steady across frames: see
        `pcdms.jobs.animate.animate` (returns an `Animation` whose `frames` are the images)."""
        from pcdms.jobs.animate import animate

        return animate(self, source_image, poses, **kwargs)
