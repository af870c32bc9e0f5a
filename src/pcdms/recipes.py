"""Sampling recipes: how each stage's loop is run, this project's way or exactly the authors' way.

The networks are the same either way; a recipe fixes what the paper leaves open and the authors' code decided
(`shared/authors_reference/SAMPLER.md`). Selected by `sample.recipe` in a model's config: models trained with
pcdms use "pcdms"; the `authors-512` preset and every model converted from the authors' files use "authors";
the authors' simplified stage-2-only model uses "authors-notebook" (their demo notebook's `PCDMsPipeline`).

| | pcdms | authors | authors-notebook |
|---|---|---|---|
| timestep spacing | trailing (first step at t=999, last step to a clean sample) | from_config on SD-2.1-base, diffusers 0.24 (UniPC 999, 949, ..., 50 ending at sigma(t=0); DDIM 951, ..., 1 without `set_alpha_to_one`) | as authors |
| guidance on | whenever scale != 1 | only when scale > 1 | only when scale > 1 |
| result | the last step's clean estimate | the scheduler's last sample | the scheduler's last sample |
| stage-2/3 null tokens | raw DINOv2 tokens and CLIP embedding zeroed BEFORE the projections (what condition dropout trained) | the whole cross-attention sequence zeroed AFTER the projection (CLIP token included), zero class label | raw DINOv2 tokens zeroed before the projection |
| stage-3 null coarse image | kept (dropout never removed it in our training) | zero latents | - |
| guidance on a limited interval of steps (`sample.guidance_interval`) | allowed | refused: every step guided, as theirs | refused |

Why pcdms differs: its models learn the null from condition dropout of the raw inputs, so the unconditional
half is exactly what training saw; trailing spacing starts from pure noise and ends clean. The authors' choices
are reproduced for their weights, bit-for-bit in float32 on their tiny reference checkpoints (tests).
Stage 1 in the authors' recipe samples with `unclip` (`sample.prior_scheduler`) without guidance (their
script's default; their pipeline crashes above 1). Above 1 our guided prior is used, whose null condition
zeroes the raw inputs: source embedding and both keypoint sets (the authors trained with CLIP of a zeroed
image instead of a zero embedding, so this null is an approximation for their prior).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pcdms.errors import ConfigError, UserError

NullTokens = Literal["inputs", "projected"]
FULL_INTERVAL = (0.0, 1.0)  # `sample.guidance_interval` guiding every step


@dataclass(frozen=True)
class Recipe:
    """What a stage's sampling loop does beyond its network (see the module table)."""

    name: str
    spacing: Literal["trailing", "authors"]
    guidance_above_one: bool
    finish_at_x0: bool
    null_tokens: NullTokens
    null_coarse: bool
    limited_guidance: bool  # may guidance be on for part of the steps only (`sample.guidance_interval`)


RECIPES: dict[str, Recipe] = {
    "pcdms": Recipe("pcdms", "trailing", guidance_above_one=False, finish_at_x0=True, null_tokens="inputs",
                    null_coarse=False, limited_guidance=True),
    "authors": Recipe("authors", "authors", guidance_above_one=True, finish_at_x0=False, null_tokens="projected",
                      null_coarse=True, limited_guidance=False),
    "authors-notebook": Recipe("authors-notebook", "authors", guidance_above_one=True, finish_at_x0=False,
                               null_tokens="inputs", null_coarse=True, limited_guidance=False),
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A recipe by name (or the recipe itself)."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise UserError(f"unknown sampling recipe '{recipe}': use one of {', '.join(RECIPES)}")
    return RECIPES[recipe]


def check_guidance_interval(recipe: str | Recipe, interval: tuple[float, float]) -> None:
    """Refuse guidance on part of the steps for a recipe that reproduces loops guided on every step."""
    recipe = get_recipe(recipe)
    if tuple(interval) != FULL_INTERVAL and not recipe.limited_guidance:
        raise ConfigError(f"sample.guidance_interval={list(interval)} needs sample.recipe=pcdms: the '{recipe.name}' "
                          "recipe reproduces the authors' loops, which guide every step; leave it at [0.0, 1.0]")
