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
batch is done, and a frame already there is read back, not redone. A frame whose pose is missing, or whose
batch fails with a `UserError`, is reported by index and shows the nearest generated frame instead (the
video keeps its timing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pcdms.errors import UserError
from pcdms.pose import Pose
from pcdms.sequences import PoseSequence

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
        from pcdms.extract import extract_pose

        source_pose = extract_pose(source_image, "the source image")
    source_image = source_image.convert("RGB")
    frames_dir = Path(frames_dir) if frames_dir is not None else None
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
    result = Animation([], list(sequence.poses))
    images: dict[int, Image.Image] = {}
    todo = []
    for i, pose in enumerate(sequence.poses):
        if pose is None:
            result.missing[i] = sequence.problems.get(i, "no pose")
        elif frames_dir is not None and frame_path(frames_dir, i).is_file():
            images[i] = _read_frame(frame_path(frames_dir, i))
            result.resumed.append(i)
        else:
            todo.append(i)
    bar = Progress(len(todo), "animate", "frame", resolve_mode(progress))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        for i, image in _render(pipe, source_image, source_pose, sequence.poses, chunk, noise, seed, call, result):
            images[i] = image
            if frames_dir is not None:
                save_atomic(image, frame_path(frames_dir, i))
            result.made.append(i)
        bar.update(len(chunk))
    bar.close()
    if not images:
        raise UserError("no frame could be generated: " + "; ".join(f"frame {i}: {w}" for i, w in result.missing.items()))
    result.frames = hold_nearest(images, len(sequence))
    return result


def _read_frame(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _render(pipe: Any, source: Image.Image, source_pose: Pose, poses: Sequence[Pose | None], chunk: list[int],
            noise: str, seed: int, call: dict, result: Animation) -> list[tuple[int, Image.Image]]:
    """Frames `chunk` through one `pipe.batch`; when it fails with a UserError, each frame alone, so the
    failure is pinned on the right frame and the others still come out."""
    def run(indices: list[int]) -> list[tuple[int, Image.Image]]:
        outputs = pipe.batch([source] * len(indices), [poses[i] for i in indices], [source_pose] * len(indices),
                             generators=[frame_generator(noise, seed, i) for i in indices], **call)
        return [(i, out.images[0]) for i, out in zip(indices, outputs)]

    try:
        return run(chunk)
    except UserError as err:
        if len(chunk) == 1:
            result.missing[chunk[0]] = str(err)
            return []
    done = []
    for i in chunk:
        done += _render(pipe, source, source_pose, poses, [i], noise, seed, call, result)
    return done


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
