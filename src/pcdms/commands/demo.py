"""`pcdms demo`: the full three-stage pipeline on the shipped small model and shipped inputs -> one grid image."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcdms.commands.common import DEMO_MODEL
from pcdms.validation import check_weight_files, prepare_output_dir, setting_arg

ASSETS = DEMO_MODEL.parent  # the demo model and the shipped inputs it runs on


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run prior -> inpaint -> refine on the shipped demo model and write a grid image",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Run the whole PCDMs pipeline (prior -> inpaint -> refine) with the small model this repository ships
(trained on the CPU on synthetic people, `scripts/train_demo.sh`) on people it never saw in training.

Writes to --out:
  grid.png      one row per pair: source | target pose | coarse (stage 2) | final (stage 3) | ground truth
  process.png   the diffusion process of the first pair: the predicted clean image at six steps of stage 2
                (top row) and of stage 3 (bottom row), each labelled with its step and timestep
  scores.json   SSIM (ssim_pidm) and L1 to the ground truth of the source photo, the coarse and the final
                image of each pair, and their means: the final image should beat the source photo
  config.yaml   the model's resolved config""",
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    parser.add_argument("--model", default=str(DEMO_MODEL), help="model folder (default: the shipped demo model)")
    parser.add_argument("--steps", type=setting_arg("steps"), default=None, help="sampling steps per stage (default: the model's own; 10 for the shipped demo model)")
    parser.add_argument("--seed", type=setting_arg("seed"), default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    import numpy as np
    import torch
    from PIL import Image

    from pcdms.config import config_to_yaml, load_config
    from pcdms.errors import UserError
    from pcdms.imageio import save_atomic
    from pcdms.imageio import load_image
    from pcdms.metrics.pixel import ssim_256
    from pcdms.sampling.pipeline import PCDMsPipeline
    from pcdms.pose import read_openpose_json
    from pcdms.visualize import PROCESS_FRAMES, StepLog, image_grid, process_figure, process_steps

    model = Path(args.model)
    if not (model / "config.yaml").is_file():
        raise UserError(f"no demo model at {model}: train one with scripts/train_demo.sh, or pass --model DIR")
    inputs = ASSETS / "inputs"
    pairs = json.loads((inputs / "pairs.json").read_text())
    out = prepare_output_dir(args.out)
    (out / "config.yaml").write_text(config_to_yaml(load_config(str(model / "config.yaml"))))
    from pcdms.progress import choose_mode, quiet_library_bars

    quiet_library_bars(choose_mode())  # no library bars in a log file
    start = time.perf_counter()
    check_weight_files(model)
    pipe = PCDMsPipeline.from_pretrained(model)
    print(f"loaded {model} in {time.perf_counter() - start:.1f} s")
    rows, process, scores, steps = [], None, [], StepLog()

    def score(image: Image.Image, truth: Image.Image) -> dict[str, float]:
        pred, gt = np.asarray(image, np.float32), np.asarray(truth, np.float32)
        return {"ssim": round(ssim_256(gt, pred, sigma=1.2), 4), "l1": round(float(np.abs(pred - gt).mean() / 255), 4)}

    for index, pair in enumerate(pairs):
        source = load_image(inputs / pair["source"])
        target_pose = read_openpose_json(inputs / f"{Path(pair['target']).stem}.json")
        source_pose = read_openpose_json(inputs / f"{Path(pair['source']).stem}.json")
        tic = time.perf_counter()
        result = pipe(source, target_pose, source_pose, num_inference_steps=args.steps, return_process=index == 0,
                      process_frames=PROCESS_FRAMES, callback=steps if index == 0 else None,
                      generator=torch.Generator().manual_seed(args.seed + index))
        seconds = time.perf_counter() - tic
        if result.process and process is None:
            labels = process_steps(steps, args.steps or pipe.sample.num_inference_steps)
            process = process_figure(result.process[0], pipe.width, labels)
        truth = load_image(inputs / pair["target"])
        scores.append({"pair": pair["name"], **{name: score(image, truth) for name, image in (
            ("source", source), ("coarse", result.coarse_images[0]), ("final", result.images[0]))}})
        print(f"{pair['name']}: {seconds:.2f} s for 3 stages; SSIM to the ground truth: source "
              f"{scores[-1]['source']['ssim']:.3f}, coarse {scores[-1]['coarse']['ssim']:.3f}, "
              f"final {scores[-1]['final']['ssim']:.3f}")
        pose_image = Image.fromarray(target_pose.render())
        rows.append([source, pose_image, result.coarse_images[0], result.images[0], truth])
    width, height = rows[0][0].size
    grid = image_grid(rows, ["source", "target pose", "coarse", "final", "ground truth"], cell=(width * 2, height * 2))
    save_atomic(grid, out / "grid.png")
    if process is not None:
        save_atomic(process, out / "process.png")
    mean = {kind: {m: round(float(np.mean([row[kind][m] for row in scores])), 4) for m in ("ssim", "l1")}
            for kind in ("source", "coarse", "final")}
    (out / "scores.json").write_text(json.dumps({"pairs": scores, "mean": mean}, indent=2) + "\n")
    print("mean SSIM to the ground truth: " + ", ".join(f"{k} {v['ssim']:.3f}" for k, v in mean.items()))
    print(f"wrote {out / 'grid.png'} (source | target pose | coarse | final | ground truth), {out / 'process.png'} "
          f"and {out / 'scores.json'}")
    return 0
