"""Validate a dataset root and list every problem with its file and line (`pcdms data check`).

Bad data is the most common reason a pose-transfer run fails late or trains on garbage
(`shared/REFERENCE.md` Sec. 2 and 4). This reads each split with the lenient readers of
`pcdms.data.formats` (malformed rows, keypoints outside the frame or NaN, annotations without any usable
joint, pairs naming unknown images, missing images, splits without a pair) and then decodes every image to
find unreadable ones. Nothing stops at the first problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pcdms.data.formats import Problem, SplitData, available_splits, detect_format, read_split
from pcdms.imageio import ImageReadError, load_image


@dataclass
class CheckResult:
    """The problems found, and per split what was read."""

    root: Path
    format: str
    problems: list[Problem] = field(default_factory=list)
    splits: dict[str, SplitData] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line per split: images, pairs."""
        parts = [f"{name}: {len(d.images)} images, {len(d.pairs)} pairs" for name, d in self.splits.items()]
        return f"{self.root} (format {self.format}; {'; '.join(parts) or 'no splits'})"


def check_dataset(
    root: str | Path,
    splits: list[str] | None = None,
    format: str = "auto",
    decode_images: bool = True,
    progress: bool | str = False,
) -> CheckResult:
    """Every problem of the given splits (default: every split with a pair file) of a dataset root.

    progress: True (a bar in a terminal, else lines), False (silent) or a `pcdms.progress` mode; lines go to
    stderr, so stdout holds only the report."""
    import sys

    from pcdms.progress import Progress, resolve_mode

    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    result = CheckResult(root, fmt)
    names = splits or available_splits(root, fmt)
    if not names:
        result.problems.append(Problem(root, None, "no split found (no pair file)", "missing-file"))
    for split in names:
        data, problems = read_split(root, split, fmt)
        result.splits[split] = data
        result.problems += problems
        if not data.pairs:  # nothing to train on or generate, whatever else is right
            where = data.files[-1] if data.files else root
            result.problems.append(Problem(where, None, f"split '{split}' has no usable pair", "no-pairs"))
        if not decode_images:
            continue
        entries = [e for e in data.images.values() if e.path is not None]
        with Progress(len(entries), f"check {split}", "img", resolve_mode(progress), stream=sys.stderr) as bar:
            for entry in entries:
                try:
                    load_image(entry.path)  # a full decode: truncated files pass a header check
                except ImageReadError as err:
                    message = f"image '{entry.name}' is unreadable: {err}"
                    result.problems.append(Problem(*entry.origin, message, "unreadable-image"))
                bar.update()
    return result
