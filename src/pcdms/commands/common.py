"""What several commands share, with one home each: the arguments of commands that take a run config
(`--config`, `key=value` overrides, `--dry-run`), and for commands that run a trained model (generate, refine,
animate, export-coarse) their arguments, model loading, pose loading and start-up summary.

Not a command itself (`pcdms.cli` skips it); it imports no torch at module level, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcdms.config import RunConfig, config_to_yaml, load_config, preset_names
from pcdms.errors import UserError
from pcdms.validation import at_least, check_model_folder, resolve_device, setting_arg


def add_config_args(parser: argparse.ArgumentParser, default: str | None = "tiny") -> None:
    parser.add_argument(
        "--config",
        default=default,
        metavar="PRESET_OR_YAML",
        help=f"a preset ({', '.join(preset_names())}) or a YAML file (default: {default or 'chosen by the command'})",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted config overrides, e.g. train.batch_size=8 sample.num_inference_steps=50",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and exit without doing anything"
    )


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Preset/YAML + overrides -> validated RunConfig (raises ConfigError, a UserError)."""
    return load_config(args.config, list(args.overrides))


def dry_run(args: argparse.Namespace, cfg: RunConfig) -> bool:
    """Print the resolved config when --dry-run was given; the caller returns when this is True."""
    if getattr(args, "dry_run", False):
        print(config_to_yaml(cfg), end="")
        return True
    return False


# ---------------------------------------------------------------- commands that run a trained model
#: The small model this repository ships (`scripts/train_demo.sh`): the default --model of every inference command.
DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo" / "model"


def add_progress_arg(parser: argparse.ArgumentParser, unit: str) -> None:
    """`--no-progress`: plain lines instead of bars (`pcdms.progress.choose_mode`); `unit` is what is counted."""
    parser.add_argument("--no-progress", action="store_true",
                        help=f"no progress bars: a plain line every 10%% of the {unit} or minute instead (what a log "
                             "file gets anyway when output is not a terminal)")


def add_run_args(parser: argparse.ArgumentParser, unit: str = "pairs") -> None:
    """`--device`, `--batch-size` and `--no-progress`: where a job runs and how it reports; `unit` is what a
    batch holds (pairs, frames)."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=at_least(1), default=8,
                        help=f"{unit} per pipeline pass (default 8; larger keeps a GPU busier; same images at any size)")
    add_progress_arg(parser, unit)


def add_inference_args(parser: argparse.ArgumentParser, unit: str = "pairs") -> None:
    """The options of every command that samples a PCDMs model folder (generate, refine, animate): the model,
    `--out`, the sampling settings (ranges: `validation.RUN_SETTING_RANGES`), precision, and `add_run_args`."""
    parser.add_argument("--model", default=str(DEMO_MODEL),
                        help="a PCDMs model folder (config.yaml + prior/ inpaint/ refine/); default: the shipped demo model")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=setting_arg("steps"), default=None,
                        help="sampling steps per stage (default: the model's config)")
    parser.add_argument("--guidance", type=setting_arg("guidance"), default=None,
                        help="one guidance scale for every stage (default: the config's per-stage scales, 2.0 in the paper)")
    parser.add_argument("--refine-strength", type=setting_arg("refine_strength"), default=None, metavar="S",
                        help="stage 3 from pure noise (1, the paper) or, below 1, image-to-image from the input "
                             "noised this far up the schedule, running that share of the steps (default: the "
                             "model's config)")
    parser.add_argument("--seed", type=setting_arg("seed"), default=0,
                        help="random seed; each pair seeds from (seed, pair index)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="weights and activations on the GPU (fp16/bf16 halve memory and time)")
    add_run_args(parser, unit)
    parser.add_argument("overrides", nargs="*", metavar="sample.key=value",
                        help="sampling settings of the model's config, e.g. sample.scheduler=unipc "
                             "sample.guidance_interval=[0.2,0.8] (guidance on the middle 60%% of the steps only)")


def load_pipeline(args: argparse.Namespace, out: Path):
    """The model of --model on --device at --precision, with the `sample.` overrides and --refine-strength; its
    resolved config saved beside the outputs in `out`. Raises UserError for a wrong device, precision or override."""
    import torch

    from pcdms.config import save_config
    from pcdms.sampling.pipeline import PCDMsPipeline

    device = resolve_device(args.device)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    if dtype is not None and not str(device).startswith("cuda"):
        raise UserError(f"--precision {args.precision} needs a GPU (--device cuda); on the CPU use fp32")
    check_model_folder(args.model)
    wrong = [o for o in args.overrides if not o.startswith("sample.")]
    if wrong:
        raise UserError(f"{wrong[0]}: only sampling settings (sample.<key>=<value>) can be changed here; the rest "
                        "of a model's config is fixed by its weights")
    strength = [] if args.refine_strength is None else [f"sample.refine_strength={args.refine_strength}"]
    pipe = PCDMsPipeline.from_pretrained(args.model, device=device, dtype=dtype, overrides=[*args.overrides, *strength])
    save_config(pipe.config, out)
    return pipe


def reporting_mode(no_progress: bool) -> str:
    """The `pcdms.progress` mode of this run (bars in a terminal, lines otherwise or with --no-progress), with the
    libraries' own bars set to follow it (silenced unless this main process shows bars)."""
    from accelerate import PartialState

    from pcdms.progress import choose_mode, quiet_library_bars

    mode = choose_mode(no_progress)
    quiet_library_bars(mode, PartialState().is_main_process)
    return mode


def start(args: argparse.Namespace, out: Path):
    """The reporting mode (library bars set to follow it) and the loaded pipeline of --model."""
    mode = reporting_mode(args.no_progress)
    return mode, load_pipeline(args, out)


def announce(title: str, pipe, rows: list[tuple[str, str]], out: Path, batch_size: int, mode: str) -> None:
    """Print a job's start-up summary (`pcdms.summary.inference_summary`: model, data, how images are fitted,
    device, output) once, on the main process."""
    from accelerate import PartialState

    from pcdms.progress import say
    from pcdms.summary import inference_summary

    state = PartialState()
    say(inference_summary(title, pipe, rows, out, batch_size, state.num_processes), mode, state.is_main_process)


def load_pose(path: str, what: str):
    """A pose by gallery name (`pcdms pose gallery`), from OpenPose JSON, read from a skeleton picture (an
    OpenPose/ControlNet/DWPose render, `pcdms.pose.picture`) or extracted from a photo (MediaPipe); `what` names the
    argument in errors. Raises UserError when the file lists no person or no pose can be found."""
    from pcdms.pose.extract import extract_pose
    from pcdms.pose.gallery import resolve_pose_file
    from pcdms.imageio import load_image
    from pcdms.pose import read_openpose_json
    from pcdms.pose.picture import is_skeleton_picture, read_skeleton_picture

    file = resolve_pose_file(path, what)
    if file.suffix.lower() == ".json":
        pose = read_openpose_json(file)
        if pose is None:
            raise UserError(f"{what} '{path}' lists no person")
        return pose
    image = load_image(file)
    if is_skeleton_picture(image):
        return read_skeleton_picture(image, f"{what} '{path}'").pose
    return extract_pose(image, f"{what} '{path}'")
