"""How steady does `pcdms animate` keep a person? Synthetic people moved through the built-in motions, where
every frame has a true image, animated with shared and with fresh noise per frame.

For each identity of the demo model's test split (people it never saw) and each motion, the person is drawn
by `pcdms.data.synth` in every pose of `pcdms.jobs.motions` (same look, same backdrop, a camera that does not
move): frame 0 is the source photo, the motion's poses drive `PCDMsPipeline.animate`. Printed per setting:

- SSIM (ssim_pidm, as `pcdms demo` scores) and L1 of each frame to its true image, averaged over frames;
- flicker: the mean absolute change from one frame to the next (L1 on [0, 1] RGB) of the output, beside
  the same for the true frames (what the motion itself changes); the ratio is how much more the output
  changes than the truth does (1 = as steady as the truth);
- temporal error: the mean |(out_t - out_t-1) - (true_t - true_t-1)|, the change that the motion does not
  explain.

Settings: noise shared / fresh, with all three stages (full) and without the refiner (B2). Sequence k is
animated with seed k (`--seed` for one seed everywhere): shared noise is one draw per video, so the per-frame
accuracy of one sequence is that of one sample.
    .venv/bin/python benchmarks/animate_steadiness.py [--identities 3] [--frames 12] [--steps 20] [--save DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pcdms.data.synth import build_figure, paint_figure, sample_identity
from pcdms.data.synth_draw import SUPERSAMPLE, Figure
from pcdms.metrics.pixel import ssim_256
from pcdms.jobs.motions import make_motion
from pcdms.sampling.pipeline import PCDMsPipeline
from pcdms.pose import Pose

DEMO = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo"
SEED, FIRST_TEST_ID, HEIGHT, WIDTH = 0, 160, 64, 44  # scripts/train_demo.sh: 160 training ids, seed 0, 64x44
MOTIONS = ("arms-up", "wave", "walk")  # `turn` needs profile views the synthetic people are never drawn in


def front_figure(identity_index: int):
    """A front-facing figure of the identity, in body units, with its visible joints."""
    identity = sample_identity(SEED, identity_index, "test")
    for attempt in range(100):
        rng = np.random.default_rng([SEED, identity_index, 1000 + attempt])
        figure, view, visible = build_figure(identity, rng)
        if view == "front" and abs(figure.turn) < 0.1 and not any(figure.arms_in_front.values()):
            return identity, figure, visible
    raise RuntimeError(f"identity {identity_index}: no front view drawn")


def true_frames(identity_index: int, motion: str, frames: int) -> tuple[list[Image.Image], list[Pose]]:
    """The identity drawn in every pose of `motion` made from its own front pose: images and poses (64x44)."""
    identity, figure, visible = front_figure(identity_index)
    base = Pose(figure.joints * 100 + 200, visible, 600, 600)  # body units -> a roomy provisional frame
    poses = make_motion(motion, base, frames)
    head_top = figure.head_centre[1] * 100 + 200 - 150 * identity.look.head_r
    points = np.concatenate([p.xy[p.visible] for p in poses])
    top, bottom = min(points[:, 1].min(), head_top) - 6, points[:, 1].max() + 8
    left, right = points[:, 0].min() - 8, points[:, 0].max() + 8
    scale = min(HEIGHT / (bottom - top), WIDTH / (right - left))  # provisional px -> output px
    offset = np.array([WIDTH / 2 - scale * (left + right) / 2, HEIGHT / 2 - scale * (top + bottom) / 2])
    images, out_poses = [], []
    for pose in poses:
        joints = (pose.xy * scale + offset) * SUPERSAMPLE
        neck_shift = pose.xy[1] - base.xy[1]
        head = ((figure.head_centre * 100 + 200 + neck_shift) * scale + offset) * SUPERSAMPLE
        placed = Figure(joints, head, figure.head_angle, 100 * scale * SUPERSAMPLE, figure.down, "front",
                        figure.turn, {"r": False, "l": False}, figure.face_shift)
        rng = np.random.default_rng([SEED, identity_index, 7])  # the same backdrop in every frame
        sample = paint_figure(identity, placed, pose.visible, HEIGHT, WIDTH, rng)
        images.append(Image.fromarray(sample.image))
        out_poses.append(sample.pose)
    return images, out_poses


def scores(frames: list[Image.Image], truth: list[Image.Image]) -> dict[str, float]:
    out = [np.asarray(f, dtype=np.float32) for f in frames]
    gt = [np.asarray(f, dtype=np.float32) for f in truth]
    change = lambda seq: [np.abs(b - a).mean() / 255 for a, b in zip(seq, seq[1:])]  # noqa: E731
    temporal = [np.abs((o1 - o0) - (g1 - g0)).mean() / 255 for o0, o1, g0, g1 in zip(out, out[1:], gt, gt[1:])]
    return {"ssim": float(np.mean([ssim_256(g, o, sigma=1.2) for g, o in zip(gt, out)])),
            "l1": float(np.mean([np.abs(o - g).mean() / 255 for g, o in zip(gt, out)])),
            "flicker": float(np.mean(change(out))), "truth_change": float(np.mean(change(gt))),
            "temporal": float(np.mean(temporal))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, 20)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the seed of every sequence (default: sequence k uses seed k, its own draw of noise)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", default=None, help="folder for contact sheets (truth, shared, fresh rows)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pipe = PCDMsPipeline.from_pretrained(DEMO / "model", device=args.device)
    settings = [("shared", "full"), ("fresh", "full"), ("shared", "B2"), ("fresh", "B2")]
    rows: dict[tuple[str, str], list[dict]] = {s: [] for s in settings}
    start = time.perf_counter()
    for identity in range(FIRST_TEST_ID, FIRST_TEST_ID + args.identities):
        for number, motion in enumerate(MOTIONS):
            truth, poses = true_frames(identity, motion, args.frames)
            sheet = [truth]
            seed = args.seed if args.seed is not None else (identity - FIRST_TEST_ID) * len(MOTIONS) + number
            for noise, stages in settings:
                frames = pipe.animate(truth[0], poses, source_pose=poses[0], noise=noise, seed=seed, batch_size=8,
                                      progress=False, stages=stages, num_inference_steps=args.steps).frames
                rows[(noise, stages)].append(scores(frames, truth))
                sheet.append(frames)
            if args.save:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                grid = np.concatenate([np.concatenate([np.asarray(f) for f in row], 1) for row in sheet], 0)
                Image.fromarray(grid).save(Path(args.save) / f"id{identity}_{motion}.png")
            print(f"id {identity} {motion} ({time.perf_counter() - start:.0f} s):", flush=True)
            table({s: [v[-1]] for s, v in rows.items()})
    count = args.identities * len(MOTIONS)
    print(f"\nmean of {count} sequences ({args.identities} identities x {', '.join(MOTIONS)}), {args.frames} frames "
          f"each, demo model, {args.steps or pipe.sample.num_inference_steps} steps")
    table(rows)


def table(rows: dict[tuple[str, str], list[dict]]) -> None:
    """One line per setting: the mean over sequences of each figure."""
    print(f"{'noise':7} {'stages':6} {'SSIM':>6} {'L1':>6} {'flicker':>8} {'truth':>6} {'ratio':>6} {'temporal':>9}")
    for (noise, stages), values in rows.items():
        mean = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
        print(f"{noise:7} {stages:6} {mean['ssim']:6.3f} {mean['l1']:6.3f} {mean['flicker']:8.4f} "
              f"{mean['truth_change']:6.4f} {mean['flicker'] / mean['truth_change']:6.2f} {mean['temporal']:9.4f}")


if __name__ == "__main__":
    main()
