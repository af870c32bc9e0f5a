"""Arguments shared by every command that takes a run config: `--config`, `key=value` overrides, `--dry-run`."""

from __future__ import annotations

import argparse

from pcdms.config import RunConfig, config_to_yaml, load_config, preset_names


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

