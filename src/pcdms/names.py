"""The names of generated images: `<from>_to_<to>.png`, one home for the convention (paper Sec. 4.1).

`pcdms generate` writes them, `export-coarse` writes stage 3's inputs under them, the training dataset finds
those inputs by them, `pcdms refine` takes each image's source photo from `<from>` and `pcdms evaluate` pairs
predictions with ground truth by `<to>` (`pcdms.metrics.pairing`). `<from>` and `<to>` are dataset image names
with their image extension dropped and folders flattened with '_' (`image_stem`); several samples of one pair
add `_sample<k>`.

Writing is `output_stem` / `output_paths`; reading is `split_output_stem`, the one parser every reader uses, so
refine, evaluate and the dataset never pair one file two ways. A name may itself hold `_to_` (`look_to_left.png`
paired with `b.png` is `look_to_left_to_b.png`), so a file name can have several readings; the rule is in
`split_output_stem`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SEPARATOR = "_to_"
_SAMPLE = re.compile(r"_sample(\d+)$")


def image_stem(name: str) -> str:
    """A dataset image name as it appears in output names: image extension dropped, folders flattened with '_'.

    `MEN/x.jpg` -> `MEN_x`; `b.png` -> `b`; `pose.json` -> `pose.json` (not an image extension).
    """
    base, ext = os.path.splitext(name)
    return (base if ext.lower() in IMAGE_EXTENSIONS else name).replace("/", "_")


def output_stem(source: str, target: str) -> str:
    """`<from>_to_<to>` from dataset image names: extensions dropped, folders flattened with '_'."""
    return f"{image_stem(source)}{SEPARATOR}{image_stem(target)}"


def output_paths(out_dir: Path, stem: str, num_samples: int) -> list[Path]:
    """The files of one pair: `<stem>.png`, or `<stem>_sample{k}.png` for k < num_samples when several."""
    if num_samples == 1:
        return [out_dir / f"{stem}.png"]
    return [out_dir / f"{stem}_sample{k}.png" for k in range(num_samples)]


@dataclass(frozen=True)
class OutputName:
    """One reading of an output file name: `<from>`, `<to>` (as `image_stem` writes them) and the sample index."""

    source: str
    target: str
    sample: int  # k of `_sample<k>`; 0 for a file without the suffix

    @property
    def stem(self) -> str:
        """`<from>_to_<to>`, the pair's key (the sample suffix left out)."""
        return f"{self.source}{SEPARATOR}{self.target}"


def _drop_extension(name: str) -> str:
    base, ext = os.path.splitext(name)
    return base if ext.lower() in IMAGE_EXTENSIONS else name


def split_output_stem(
    name: str,
    sources: Collection[str] | None = None,
    targets: Collection[str] | None = None,
) -> OutputName | None:
    """Read `<from>_to_<to>[_sample<k>]` from a file name or stem; None when no reading exists.

    name: a file name or stem (`a_to_b.png`, `a_to_b_sample1`); one trailing image extension is dropped, and
        each side may carry its own (`a.jpg_to_b.jpg.png` reads as a, b).
    sources, targets: the image stems (`image_stem`) `<from>` and `<to>` may be, when the reader knows them
        (refine: the dataset's images; evaluate: the ground-truth files). Build them once: lookups only.

    Rule: every `_to_` with something on both sides is a candidate split, and a trailing `_sample<k>` is read
    either as the sample index or as part of `<to>`. A reading scores one point per known set that holds its
    side; the highest score wins. Ties, and every name when nothing is known, go to the reading that takes
    `_sample<k>` as the sample index and then splits at the LAST `_to_` (the PCDMs evaluation script's
    `split('_to_')[-1]`), so `<from>` may hold `_to_` but `<to>` only when a known name says so.
    """
    stem = _drop_extension(name)
    tails = [(stem, 0, False)]
    suffix = _SAMPLE.search(stem)
    if suffix:
        tails.append((stem[: suffix.start()], int(suffix.group(1)), True))
    best: tuple[tuple[int, bool, int], OutputName] | None = None
    for body, sample, suffixed in tails:
        for match in re.finditer(re.escape(SEPARATOR), body):
            source = _drop_extension(body[: match.start()])
            target = _drop_extension(body[match.end() :])
            if not source or not target:
                continue
            score = (sources is not None and source in sources) + (targets is not None and target in targets)
            rank = (score, suffixed, match.start())
            if best is None or rank > best[0]:
                best = (rank, OutputName(source, target, sample))
    return None if best is None else best[1]
