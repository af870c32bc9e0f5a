"""One photo through a pose sequence to the frames of a video, with the person kept the same in every frame.

PCDMs makes single images (paper Sec. 3); run frame by frame with fresh noise, a person's clothes and hair
change from frame to frame. What steadies them here, all inside the paper's model:

- shared starting noise (`noise="shared"`, the default): every frame starts every stage from the same noise,
  drawn from one seed, so with the deterministic DDIM sampler two frames differ only through their poses.
  `noise="fresh"` seeds frame i from (seed, i), as `pcdms generate` seeds pairs;
- frames go through `PCDMsPipeline.batch` `batch_size` at a time, with the source pose given once (never
  re-extracted) and the same source image for every frame, which `batch` encodes once per batch (CLIP
  embedding, DINOv2 tokens, masked-canvas latents: they depend only on the source);
- `stages="B2"` (prior + inpaint; paper Sec. 4.2) skips the refiner, whose second draw of noise repaints
  texture (measured by `benchmarks/animate_steadiness.py`).

The frame loop is resumable: frame i is written to `frames_dir/frame_NNNNN.png` (atomically) as soon as its
batch is done, and a frame already there is read back, not redone. Frames run through the job runner of
`pcdms generate` (`pcdms.jobs.generate.run_batches`): a batch that fails with a `UserError` or `OSError` is
retried frame by frame, so a frame whose pose is missing or whose own pass fails is reported by index and
shows the nearest generated frame instead (the video keeps its timing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pcdms.errors import UserError
from pcdms.jobs.generate import Item, pipeline_render, run_batches
from pcdms.pose import Pose
from pcdms.jobs.sequences import PoseSequence

NOISE_MODES = ("shared", "fresh")


@dataclass
class Animation:
    """frames: one image per input pose, at the source's size (frames without an image of their own repeat
    the nearest one); made: indices generated in this call; resumed: read back from `frames_dir`;
    missing: frame index -> why it has no image of its own."""

    frames: list[Image.Image]
    poses: list[Pose | None]
    made: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    missing: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{len(self.frames)} frames: {len(self.made)} generated, {len(self.resumed)} already there, "
                 f"{len(self.missing)} without an image of their own"]
        lines += [f"  frame {i}: {why}" for i, why in sorted(self.missing.items())]
        return "\n".join(lines)


def frame_path(frames_dir: Path, index: int) -> Path:
    return Path(frames_dir) / f"frame_{index:05d}.png"


def frame_generator(noise: str, seed: int, index: int) -> torch.Generator:
    """The generator of frame `index`: one seed for all frames (shared) or one per frame (fresh)."""
    if noise not in NOISE_MODES:
        raise UserError(f"noise='{noise}' is not one of {', '.join(NOISE_MODES)}")
    return torch.Generator().manual_seed(seed if noise == "shared" else seed * 1_000_003 + index)


def animate(
    pipe: Any,
    source_image: Image.Image,
    poses: Sequence[Pose | None] | PoseSequence,
    *,
    source_pose: Pose | None = None,
    noise: str = "shared",
    seed: int = 0,
    batch_size: int = 4,
    frames_dir: str | Path | None = None,
    progress: bool | str = True,
    **call: Any,
) -> Animation:
    """Generate the person of `source_image` in each pose; `call` goes to `PCDMsPipeline.batch` (stages,
    num_inference_steps, guidance_scale). See the module docstring for noise, resuming and missing frames."""
    from pcdms.imageio import save_atomic
    from pcdms.progress import Progress, resolve_mode

    sequence = poses if isinstance(poses, PoseSequence) else PoseSequence(list(poses), [])
    if len(sequence) == 0:
        raise UserError("no poses to animate")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    frame_generator(noise, seed, 0)  # validates `noise` before any work
    if source_pose is None:
        from pcdms.pose.extract import extract_pose

        source_pose = extract_pose(source_image, "the source image")
    source_image = source_image.convert("RGB")
    frames_dir = Path(frames_dir) if frames_dir is not None else None
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
    result = Animation([], list(sequence.poses))
    images = _resume(sequence, frames_dir, result)
    frames = [_frame_item(i, sequence.poses[i], source_image, source_pose, noise, seed, frames_dir)
              for i, pose in enumerate(sequence.poses) if pose is not None and i not in images]
    frame_of = {item.name: i for i, item in frames}
    items = [item for _, item in frames]

    def done(item: Item, outputs: list[Image.Image]) -> None:
        i = frame_of[item.name]
        images[i] = outputs[0]
        if frames_dir is not None:
            save_atomic(outputs[0], item.paths[0])
        result.made.append(i)

    def failed(item: Item, why: str) -> None:
        result.missing[frame_of[item.name]] = why

    bar = Progress(len(items), "animate", "frame", resolve_mode(progress))
    run_batches(items, pipeline_render(pipe, **call), batch_size, done, failed, step=bar.update)
    bar.close()
    if not images:
        raise UserError("no frame could be generated: " + "; ".join(f"frame {i}: {w}" for i, w in result.missing.items()))
    result.frames = hold_nearest(images, len(sequence))
    return result


def _resume(sequence: PoseSequence, frames_dir: Path | None, result: Animation) -> dict[int, Image.Image]:
    """Frame index -> image of the frames already in `frames_dir` (recorded as resumed); frames without a pose
    are recorded as missing."""
    images = {}
    for i, pose in enumerate(sequence.poses):
        if pose is None:
            result.missing[i] = sequence.problems.get(i, "no pose")
        elif frames_dir is not None and frame_path(frames_dir, i).is_file():
            images[i] = _read_frame(frame_path(frames_dir, i))
            result.resumed.append(i)
    return images


def _frame_item(index: int, pose: Pose, source_image: Image.Image, source_pose: Pose, noise: str, seed: int,
                frames_dir: Path | None) -> tuple[int, Item]:
    """Frame `index` as an item of the shared job runner (`pcdms.jobs.generate.run_batches`): every frame has the
    same source image and pose objects (so `batch` encodes the source once per batch) and its own generator."""
    def prepare() -> dict[str, Any]:
        return {"source_image": source_image, "source_pose": source_pose, "target_pose": pose,
                "generator": frame_generator(noise, seed, index)}

    paths = [frame_path(frames_dir, index)] if frames_dir is not None else []
    return index, Item(f"frame {index}", paths, prepare)


def _read_frame(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def hold_nearest(images: dict[int, Image.Image], count: int) -> list[Image.Image]:
    """One image per frame index: its own, else the previous frame's, else (at the start) the first one made."""
    first = images[min(images)]
    frames, last = [], first
    for i in range(count):
        last = images.get(i, last)
        frames.append(last)
    return frames


def side_by_side(frame: Image.Image, pose: Pose | None) -> Image.Image:
    """[pose skeleton | frame], the skeleton rendered at the frame's size (black where there is no pose)."""
    import numpy as np

    width, height = frame.size
    render = np.zeros((height, width, 3), np.uint8) if pose is None else pose.render(height, width)
    both = Image.new("RGB", (2 * width, height))
    both.paste(Image.fromarray(render), (0, 0))
    both.paste(frame, (width, 0))
    return both
