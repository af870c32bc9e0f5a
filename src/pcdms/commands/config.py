"""`pcdms config`: print a resolved config, or list the presets."""

from __future__ import annotations

import argparse

from pcdms.commands.common import add_config_args, resolve_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print a resolved config (preset + overrides) as YAML, or list presets",
        description=(
            "Resolve a preset or YAML file plus dotted key=value overrides and print the full config. "
            "Unknown keys and wrong types are errors. Save the output to start your own YAML file."
        ),
    )
    add_config_args(parser)
    parser.add_argument("--list-presets", action="store_true", help="list the shipped presets and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcdms.config import config_to_yaml, preset_names

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    print(config_to_yaml(resolve_config(args)), end="")
    return 0
