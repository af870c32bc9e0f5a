"""Which prediction is scored against which ground-truth image (REFERENCE.md Sec. 4-5).

Naming convention (written and read in `pcdms.names`, the one home for it):
- a prediction is `<from>_to_<to>.png` (any image extension); `<from>` and `<to>` are image names,
  with or without their own extension (`a.jpg_to_b.jpg.png` works);
- several samples of one pair are `<from>_to_<to>_sample<k>.png`, k = 0, 1, ...; a file without the
  suffix is sample 0;
- its ground truth is the file in the GT folder whose name without extension is `<to>` (so `b.jpg` and
  `b.png` both match, as the PCDMs script's `.replace('jpg', 'png')` intends).

When a name holds `_to_` more than once, `pcdms.names.split_output_stem` takes the reading whose `<to>` exists
in the GT folder (and whose `<from>` is in the pairs file, when one is given); otherwise the last `_to_`, as
`pcdms refine` and the training dataset read it. Single-sample scores use each pair's lowest sample index (the
first draw, never a chosen one); best-of-N uses samples 0..N-1. Problems are kept by name, never dropped silently.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pcdms.errors import UserError
from pcdms.names import SEPARATOR, image_stem, output_stem, split_output_stem


@dataclass(frozen=True)
class Prediction:
    """One predicted image and the ground truth it is scored against."""

    path: Path
    source: str  # <from>, extension removed
    target: str  # <to>, extension removed
    sample: int
    gt_path: Path

    @property
    def pair(self) -> str:
        return f"{self.source}{SEPARATOR}{self.target}"


@dataclass
class Matching:
    """Predictions grouped by pair (samples in index order) plus every problem, by file or pair name."""

    pairs: dict[str, list[Prediction]] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)  # prediction files not named <from>_to_<to>
    missing_gt: list[str] = field(default_factory=list)  # prediction files whose <to> is not in --gt
    duplicates: list[str] = field(default_factory=list)  # a second file for the same pair and sample
    missing_pred: list[str] = field(default_factory=list)  # pairs in --pairs without a prediction
    not_in_pairs: list[str] = field(default_factory=list)  # prediction files for pairs --pairs lacks
    incomplete: list[str] = field(default_factory=list)  # pairs with fewer than N samples (best-of-N)
    unused_samples: list[str] = field(default_factory=list)  # samples beyond those evaluated (information)

    def problems(self) -> dict[str, list[str]]:
        """The lists that mean the folders do not match what was asked (what `--strict` fails on)."""
        names = ("unparsed", "missing_gt", "duplicates", "missing_pred", "not_in_pairs", "incomplete")
        return {name: getattr(self, name) for name in names if getattr(self, name)}

    def predictions(self) -> list[Prediction]:
        """Every prediction to evaluate, pair by pair (sorted), samples in index order."""
        return [pred for key in sorted(self.pairs) for pred in self.pairs[key]]


def _gt_index(gt_files: list[Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    # sorted, with .png first, so the choice between b.jpg and b.png is stable
    for path in sorted(gt_files, key=lambda p: (p.stem, p.suffix.lower() != ".png", p.name)):
        index.setdefault(path.stem, path)
    return index


def match_predictions(
    pred_files: list[Path],
    gt_files: list[Path],
    pairs: list[tuple[str, str]] | None = None,
    best_of: int = 1,
) -> Matching:
    """Group prediction files by pair and find each one's ground truth; see the module docstring.

    `pairs` (from, to), when given, is the list the predictions must cover (a PATN pairs CSV).
    `best_of` = N keeps samples 0..N-1 of each pair (1 = single sample: the lowest index).
    """
    if best_of < 1:
        raise UserError(f"--best-of {best_of}: expected a positive number of samples")
    gt_stems = _gt_index(gt_files)
    wanted = None if pairs is None else {output_stem(a, b) for a, b in pairs}
    sources = None if pairs is None else {image_stem(a) for a, _ in pairs}
    matching = Matching()
    seen: dict[tuple[str, int], Path] = {}
    found: dict[str, list[Prediction]] = defaultdict(list)
    for path in sorted(pred_files):
        name = split_output_stem(path.name, sources=sources, targets=gt_stems)
        if name is None:
            matching.unparsed.append(path.name)
            continue
        source, target, sample = name.source, name.target, name.sample
        if target not in gt_stems:
            matching.missing_gt.append(path.name)
            continue
        key = (name.stem, sample)
        if key in seen:
            matching.duplicates.append(f"{path.name} (same pair and sample as {seen[key].name})")
            continue
        seen[key] = path
        found[key[0]].append(Prediction(path, source, target, sample, gt_stems[target]))
    if wanted is not None:
        matching.missing_pred = sorted(wanted - set(found))
        for key in sorted(set(found) - wanted):
            matching.not_in_pairs.extend(p.path.name for p in found.pop(key))
    for key in sorted(found):
        samples = sorted(found[key], key=lambda p: p.sample)
        kept = samples[:best_of]
        matching.unused_samples.extend(p.path.name for p in samples[best_of:])
        if best_of > 1 and [p.sample for p in kept] != list(range(best_of)):
            have = ", ".join(str(p.sample) for p in samples)
            matching.incomplete.append(f"{key} (samples {have}; expected 0..{best_of - 1})")
        matching.pairs[key] = kept
    return matching


def read_pairs_csv(path: str | Path) -> list[tuple[str, str]]:
    """A PATN/DPTN pairs file (`fasion-resize-pairs-test.csv`: header with `from` and `to` columns).

    Returns (from, to) image names. Raises UserError naming the file and row for a malformed file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--pairs {path}: file not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "from" not in reader.fieldnames or "to" not in reader.fieldnames:
            raise UserError(f"--pairs {path}: expected a CSV header with columns 'from' and 'to', "
                            f"got {reader.fieldnames}")
        rows = []
        for number, row in enumerate(reader, start=2):
            source, target = (row.get("from") or "").strip(), (row.get("to") or "").strip()
            if not source or not target:
                raise UserError(f"--pairs {path}, row {number}: empty 'from' or 'to'")
            rows.append((source, target))
    if not rows:
        raise UserError(f"--pairs {path}: no pairs listed")
    return rows
