"""The three dataset layouts of this field, read into one set of records (`shared/REFERENCE.md` Sec. 4).

| format | pairs | keypoints | images |
|---|---|---|---|
| `patn` (PATN/DPTN/CFLD) | `<prefix>-pairs-<split>.csv`, header `from,to` | `<prefix>-annotation-<split>.csv`, `:`-separated `name:keypoints_y:keypoints_x[:height:width]`, 18 integers per list, -1 missing | `<split>/<name>` |
| `gfla` (GFLA/NTED/PIDM) | `<split>_pairs.txt`, comma lines, field 0 the TARGET (`GFLA_TARGET_FIELD`), the rest its sources | `pose/<name minus img/>.txt`, 18 lines `x y` in a 256x256 frame (40 px bars), -1 missing | `<name>` |
| `authors` (PCDMs) | `<split>_data.json`, list of `{source_image, target_image}` | `normalized_pose_txt/<stem>.txt`, 18 lines `x y` as fractions of the image, -1 missing | `<name>` |

PATN frames: the optional `height`/`width` columns (written by `pcdms data synth` and `pcdms pose extract`)
give each row's frame; without them a `market` prefix means 128x64 and any other 256x176 (DeepFashion).
Images may be stored at any size; `ImageEntry.frame` tells the loader which centre crop the keypoints
describe (`pcdms.imageio.center_crop_to_aspect`). An image name `x.jpg` also matches `x.png` on disk.

Every reader is lenient and returns `(SplitData, problems)`, so `pcdms data check` can list every problem;
`load_split` is the strict entry point for training and evaluation.
"""

from __future__ import annotations

import json
from textwrap import shorten
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from pcdms.errors import UserError, warn
from pcdms.pose import DEEPFASHION_FRAME, JOINTS, MARKET_FRAME, MISSING, NUM_JOINTS, Pose
from pcdms.validation import FRAME_SIDE

FORMATS = ("patn", "gfla", "authors")
GFLA_TARGET_FIELD = 0  # GFLA/PIDM pair lines: field 0 is the target image, every other field a source of it
IMAGE_SUFFIX_ALTERNATIVES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file, where in it (`line 7`, `item 3`), what, and its kind."""

    file: Path
    where: str | None
    message: str
    kind: str = "malformed"  # malformed | missing-file | missing-image | unreadable-image | unknown-image | outside-frame | bad-joints | no-joints | duplicate | outside-root

    def __str__(self) -> str:
        return f"{self.file}:{self.where}: {self.message}" if self.where else f"{self.file}: {self.message}"


@dataclass(frozen=True)
class PairRecord:
    """One training/test pair: image names as the dataset lists them."""

    source: str
    target: str


@dataclass
class ImageEntry:
    """One image of a split.

    keypoints: float32 (18, 2) normalised (x / width, y / height) in `frame`, (-1, -1) missing (`pcdms.pose`).
    frame: (height, width) of the annotation frame; the image file is centre-cropped to its aspect. None: the
    keypoints are fractions of the whole image (authors' format).
    path: the image file, None when it was not found.
    origin: (file, where) of the annotation, for messages.
    """

    name: str
    keypoints: np.ndarray
    frame: tuple[int, int] | None
    path: Path | None
    origin: tuple[Path, str | None]


@dataclass
class SplitData:
    """Pairs and per-image keypoints of one split of one dataset root."""

    root: Path
    split: str
    format: str
    pairs: list[PairRecord] = field(default_factory=list)
    images: dict[str, ImageEntry] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # the annotation/pair files read
    unreadable: set[str] = field(default_factory=set)  # names whose keypoints could not be read

    def keypoints(self, name: str) -> np.ndarray:
        """float32 (18, 2) normalised keypoints of image `name`."""
        return self.images[name].keypoints


# ---------------------------------------------------------------------- detection and entry points
def detect_format(root: str | Path) -> str:
    """The format of a dataset root, from the files in it (see the module table)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset root {root} is not a folder")
    found = [
        name
        for name, patterns in (
            ("patn", ("*-pairs-*.csv", "*-annotation-*.csv")),
            ("gfla", ("*_pairs.txt",)),
            ("authors", ("*_data.json",)),
        )
        if any(any(root.glob(p)) for p in patterns)
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(
            f"{root}: no dataset files found; expected <prefix>-pairs-<split>.csv + <prefix>-annotation-<split>.csv "
            "(PATN), <split>_pairs.txt + pose/ (GFLA) or <split>_data.json + normalized_pose_txt/ (authors)"
        )
    raise UserError(f"{root}: files of several formats ({', '.join(found)}); choose one with format=<name>")


def read_split(root: str | Path, split: str, format: str = "auto") -> tuple[SplitData, list[Problem]]:
    """Read one split leniently: the records that could be read, and every problem found."""
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt not in FORMATS:
        raise UserError(f"unknown dataset format '{format}': use auto, {', '.join(FORMATS)}")
    data = SplitData(root, split, fmt)
    problems: list[Problem] = []
    {"patn": _read_patn, "gfla": _read_gfla, "authors": _read_authors}[fmt](data, problems)
    return data, problems


def load_split(root: str | Path, split: str, format: str = "auto") -> SplitData:
    """Read one split strictly: the pair records and per-image keypoints, or a UserError listing problems.

    Keypoints outside their frame are not fatal: those joints become missing, with a warning.
    """
    known = available_splits(root, format)
    if split not in known:
        raise UserError(f"dataset {root} has no split '{split}' (it has: {', '.join(known) or 'none'})")
    data, problems = read_split(root, split, format)
    fatal = [p for p in problems if p.kind not in POSE_PROBLEMS]
    if fatal:
        shown = "\n  ".join(str(p) for p in fatal[:5])
        more = f"\n  ... and {len(fatal) - 5} more" if len(fatal) > 5 else ""
        raise UserError(
            f"dataset {data.root} split '{split}' has {len(fatal)} problem(s):\n  {shown}{more}\n"
            f"Run `pcdms data check {data.root}` for the full list."
        )
    if len(problems) > len(fatal):
        shown = "; ".join(str(p) for p in problems if p.kind in POSE_PROBLEMS)
        warn(f"{data.root} split '{split}': {len(problems) - len(fatal)} annotation problem(s), those joints are "
             f"treated as missing (`pcdms data check` lists all): {shorten(shown, 300)}")
    if not data.pairs:
        raise UserError(f"dataset {data.root} split '{split}' has no pairs")
    return data


def available_splits(root: str | Path, format: str = "auto") -> list[str]:
    """Split names that have a pair file in `root`."""
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    pattern, cut = {"patn": ("*-pairs-*.csv", None), "gfla": ("*_pairs.txt", "_pairs.txt"),
                    "authors": ("*_data.json", "_data.json")}[fmt]  # fmt: skip
    names = set()
    for path in root.glob(pattern):
        names.add(path.name.rsplit("-", 1)[1][: -len(".csv")] if cut is None else path.name[: -len(cut)])
    return sorted(names)


# ---------------------------------------------------------------------- shared helpers
def name_outside_root(name: str) -> str | None:
    """Why an image name from a dataset file would leave the dataset root (None when it stays inside): names
    are relative paths under the root, so an absolute name or a `..` part is refused, never followed."""
    if "\0" in name:
        return "holds a NUL character"
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or PureWindowsPath(name).drive:
        return "is an absolute path"
    if ".." in path.parts:
        return "climbs out with '..'"
    return None


def _inside_root(problems: list[Problem], name: str, origin: tuple[Path, str | None]) -> bool:
    why = name_outside_root(name)
    if why is not None:
        problems.append(Problem(*origin, f"image name '{name}' {why}: names are paths inside the dataset root",
                                "outside-root"))
    return why is None


def resolve_image(candidates: list[Path]) -> Path | None:
    """The first existing file among `candidates`, each also tried with the other usual image suffixes."""
    for path in candidates:
        options = [path] + [path.with_suffix(s) for s in IMAGE_SUFFIX_ALTERNATIVES if s != path.suffix.lower()]
        for option in options:
            if option.is_file():
                return option
    return None


def _add_image(data: SplitData, problems: list[Problem], entry: ImageEntry, candidates: list[Path]) -> None:
    if not _inside_root(problems, entry.name, entry.origin):
        return
    if entry.name in data.images:
        problems.append(Problem(*entry.origin, f"image '{entry.name}' is annotated twice", "duplicate"))
        return
    entry.path = resolve_image(candidates)
    if entry.path is None:
        problems.append(Problem(*entry.origin, f"image '{entry.name}' not found at {candidates[0]}", "missing-image"))
    data.images[entry.name] = entry


#: Problems that do not stop `load_split`: the joints concerned become missing (rows without any usable joint
#: are refused where a pose is needed: `pcdms generate` fails that pair by name).
POSE_PROBLEMS = ("outside-frame", "bad-joints", "no-joints")


def _check_frame(pose: Pose, origin: tuple[Path, str | None], problems: list[Problem], frame_name: str,
                 raw: np.ndarray) -> Pose:
    """Report joints that are NaN/inf (`raw`, the file's values) or outside the frame, and a pose left with no
    usable joint; those joints become missing in the returned pose."""
    bad = ~np.isfinite(np.asarray(raw, dtype=np.float64).reshape(NUM_JOINTS, 2)).all(axis=1)
    if bad.any():
        joints = ", ".join(JOINTS[j] for j in np.flatnonzero(bad))
        problems.append(Problem(*origin, f"keypoints that are not numbers (NaN/inf): {joints}", "bad-joints"))
    inside = pose.inside()
    outside = pose.visible & ~inside
    if outside.any():
        joints = ", ".join(f"{JOINTS[j]} ({pose.xy[j, 0]:g}, {pose.xy[j, 1]:g})" for j in np.flatnonzero(outside))
        problems.append(Problem(*origin, f"keypoints outside the {frame_name} frame: {joints}", "outside-frame"))
    if not inside.any():
        problems.append(Problem(*origin, "no usable keypoint (every joint is missing, NaN or outside the frame): "
                                "a pose to generate from needs at least one", "no-joints"))
    return Pose(pose.xy, inside, pose.height, pose.width)


def _add_pair(data: SplitData, problems: list[Problem], pair: PairRecord, origin: tuple[Path, str], read_image=None) -> None:
    """Keep a pair whose images both have keypoints; `read_image(name, origin)` loads one not seen yet."""
    for name in (pair.source, pair.target):
        if name in data.images or name in data.unreadable:
            continue
        if not _inside_root(problems, name, origin):
            data.unreadable.add(name)
            continue
        if read_image is None:
            problems.append(Problem(*origin, f"pair names unknown image '{name}' (no keypoints for it)", "unknown-image"))
        elif not read_image(name, origin):  # it reported its own problems, citing `origin`
            data.unreadable.add(name)
    if pair.source in data.images and pair.target in data.images:
        data.pairs.append(pair)


def _single(root: Path, pattern: str, what: str, problems: list[Problem]) -> Path | None:
    matches = sorted(root.glob(pattern))
    if len(matches) == 1:
        return matches[0]
    message = f"no {what} ({pattern})" if not matches else f"several {what} files: {', '.join(m.name for m in matches)}"
    problems.append(Problem(root, None, message, "missing-file"))
    return None


def read_xy_txt(path: Path, problems: list[Problem]) -> np.ndarray | None:
    """A pose txt of 18 lines `x y` -> float32 (18, 2), or None after reporting the problem."""
    if not path.is_file():
        problems.append(Problem(path, None, "keypoint file not found", "missing-file"))
        return None
    rows = []
    lines = [(i, s) for i, s in enumerate(path.read_text().splitlines(), 1) if s.strip()]
    for number, text in lines:
        try:
            x, y = (float(v) for v in text.replace(",", " ").split())
        except ValueError:
            problems.append(Problem(path, f"line {number}", f"expected two numbers 'x y', got '{text.strip()}'"))
            return None
        rows.append((x, y))
    if len(rows) != NUM_JOINTS:
        problems.append(Problem(path, None, f"expected {NUM_JOINTS} lines 'x y', found {len(rows)}"))
        return None
    return np.asarray(rows, dtype=np.float32)


# ---------------------------------------------------------------------- PATN / DPTN csv
def _patn_default_frame(prefix: str) -> tuple[int, int]:
    return MARKET_FRAME if prefix.lower().startswith("market") else DEEPFASHION_FRAME


def _parse_int_list(text: str) -> list[float] | None:
    try:
        values = json.loads(text)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != NUM_JOINTS:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return [float(v) for v in values]


def _read_patn(data: SplitData, problems: list[Problem]) -> None:
    annotation = _single(data.root, f"*-annotation-{data.split}.csv", "annotation file", problems)
    if annotation is not None:
        data.files.append(annotation)
        _read_patn_annotation(data, problems, annotation)
    prefix = annotation.name.rsplit("-annotation-", 1)[0] if annotation else "*"
    pairs = _single(data.root, f"{prefix}-pairs-{data.split}.csv", "pairs file", problems)
    if pairs is not None:
        data.files.append(pairs)
        _read_patn_pairs(data, problems, pairs)


def read_patn_annotation(path: str | Path) -> tuple[list[ImageEntry], list[Problem]]:
    """Just an annotation csv (no images needed): its entries and problems. Image paths are left None."""
    path = Path(path)
    split = path.stem.rsplit("-annotation-", 1)[-1]
    data = SplitData(path.parent, split, "patn")
    problems: list[Problem] = []
    _read_patn_annotation(data, problems, path, resolve=False)
    return list(data.images.values()), problems


def _read_patn_annotation(data: SplitData, problems: list[Problem], path: Path, resolve: bool = True) -> None:
    lines = path.read_text().splitlines()
    header = [h.strip() for h in (lines[0].split(":") if lines else [])]
    need = ("name", "keypoints_y", "keypoints_x")
    if any(h not in header for h in need):
        problems.append(Problem(path, "line 1", f"header must name the columns {':'.join(need)} (':'-separated)"))
        return
    col = {h: i for i, h in enumerate(header)}
    has_frame = "height" in col and "width" in col
    default = _patn_default_frame(path.name)
    image_dirs = [data.root / data.split, data.root / f"{data.split}_highres"]
    for number, text in enumerate(lines[1:], 2):
        if not text.strip():
            continue
        where = f"line {number}"
        fields = text.split(":")
        if len(fields) != len(header):
            problems.append(Problem(path, where, f"expected {len(header)} ':'-separated fields, found {len(fields)}"))
            continue
        ys, xs = _parse_int_list(fields[col["keypoints_y"]]), _parse_int_list(fields[col["keypoints_x"]])
        if ys is None or xs is None:
            problems.append(Problem(path, where, f"keypoints_y and keypoints_x must each be a list of {NUM_JOINTS} numbers"))
            continue
        frame = default
        if has_frame:
            try:
                frame = (int(fields[col["height"]]), int(fields[col["width"]]))
            except ValueError:
                frame = (0, 0)
            if not all(FRAME_SIDE.allows(side) for side in frame):
                problems.append(Problem(path, where, f"height and width must each be {FRAME_SIDE.describe()}, got "
                                        f"{fields[col['height']][:20]}:{fields[col['width']][:20]}"))
                continue
        raw = np.stack([xs, ys], axis=1)
        pose = _check_frame(Pose.from_pixels(raw, *frame), (path, where), problems, f"{frame[0]}x{frame[1]}", raw)
        name = fields[col["name"]].strip()
        entry = ImageEntry(name, pose.normalized(), frame, None, (path, where))
        if resolve:
            _add_image(data, problems, entry, [d / name for d in image_dirs])
        elif name not in data.images and _inside_root(problems, name, entry.origin):
            data.images[name] = entry


def _read_patn_pairs(data: SplitData, problems: list[Problem], path: Path) -> None:
    lines = path.read_text().splitlines()
    header = [h.strip() for h in (lines[0].split(",") if lines else [])]
    if "from" not in header or "to" not in header:
        problems.append(Problem(path, "line 1", "header must name the columns from,to"))
        return
    source_col, target_col = header.index("from"), header.index("to")
    for number, text in enumerate(lines[1:], 2):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != len(header) or not fields[source_col] or not fields[target_col]:
            problems.append(Problem(path, f"line {number}", f"expected {len(header)} comma-separated names, got '{text}'"))
            continue
        _add_pair(data, problems, PairRecord(fields[source_col], fields[target_col]), (path, f"line {number}"))


# ---------------------------------------------------------------------- GFLA / PIDM txt
def gfla_pose_path(root: Path, name: str) -> Path:
    """Where GFLA/PIDM keep the keypoints of image `name`: `img/...` -> `pose/....txt`."""
    relative = Path(name)
    parts = relative.parts[1:] if relative.parts and relative.parts[0] == "img" else relative.parts
    return (root / "pose" / Path(*parts)).with_suffix(".txt")


def _read_gfla(data: SplitData, problems: list[Problem]) -> None:
    path = data.root / f"{data.split}_pairs.txt"
    if not path.is_file():
        problems.append(Problem(data.root, None, f"no pairs file {path.name}", "missing-file"))
        return
    data.files.append(path)
    reader = partial(_read_txt_image, data, problems)
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) < 2 or not all(fields):
            problems.append(Problem(path, f"line {number}", f"expected 'target,source[,source...]', got '{text}'"))
            continue
        target = fields[GFLA_TARGET_FIELD]
        sources = fields[:GFLA_TARGET_FIELD] + fields[GFLA_TARGET_FIELD + 1 :]
        for source in sources:
            _add_pair(data, problems, PairRecord(source, target), (path, f"line {number}"), reader)


def _read_txt_image(data: SplitData, problems: list[Problem], name: str, cited: tuple[Path, str]) -> bool:
    """Keypoints of one image of a GFLA or authors' dataset; problems also cite the pair line that named it."""
    gfla = data.format == "gfla"
    pose_path = (gfla_pose_path if gfla else authors_pose_path)(data.root, name)
    before = len(problems)
    xy = read_xy_txt(pose_path, problems)
    problems[before:] = [
        Problem(p.file, p.where, f"{p.message} (image '{name}', {cited[0].name} {cited[1]})", p.kind)
        for p in problems[before:]
    ]
    if xy is None:
        return False
    if gfla:  # checked where the model sees it: the centre 176 columns (x - 40) of the 256x256 frame
        pose, frame, label = Pose.from_gfla(xy), DEEPFASHION_FRAME, "256x176 (x - 40 of the 256x256)"
    else:
        pose, frame, label = Pose.from_pixels(xy, 1, 1), None, "unit (normalised)"
    pose = _check_frame(pose, (pose_path, None), problems, label, xy)
    entry = ImageEntry(name, pose.normalized(), frame, None, (pose_path, None))
    _add_image(data, problems, entry, [data.root / name])
    return True


# ---------------------------------------------------------------------- authors' json
def authors_pose_path(root: Path, name: str) -> Path:
    """The authors' layout: `.../train_all_png/x.jpg` -> `.../normalized_pose_txt/x.txt`, else `normalized_pose_txt/<stem>.txt`."""
    if "train_all_png" in Path(name).parts or "test_all_png" in Path(name).parts:
        parts = ["normalized_pose_txt" if p in ("train_all_png", "test_all_png") else p for p in Path(name).parts]
        return (root / Path(*parts)).with_suffix(".txt")
    return root / "normalized_pose_txt" / (Path(name).stem + ".txt")


def _read_authors(data: SplitData, problems: list[Problem]) -> None:
    path = data.root / f"{data.split}_data.json"
    if not path.is_file():
        problems.append(Problem(data.root, None, f"no pairs file {path.name}", "missing-file"))
        return
    data.files.append(path)
    try:
        items = json.loads(path.read_text())
    except ValueError as err:
        problems.append(Problem(path, None, f"not valid JSON ({err})"))
        return
    if not isinstance(items, list):
        problems.append(Problem(path, None, "expected a JSON list of {source_image, target_image} objects"))
        return
    for index, item in enumerate(items):
        where = f"item {index}"
        names = [item.get(k) for k in ("source_image", "target_image")] if isinstance(item, dict) else [None]
        if not all(isinstance(n, str) and n for n in names):
            problems.append(Problem(path, where, "expected an object with string fields source_image and target_image"))
            continue
        _add_pair(data, problems, PairRecord(*names), (path, where), partial(_read_txt_image, data, problems))


# ---------------------------------------------------------------------- writers
def write_patn(
    root: str | Path, split: str, pairs: list[PairRecord], poses: dict[str, Pose], prefix: str = "synth",
    frame_columns: bool = True,
) -> tuple[Path, Path]:
    """Write `<prefix>-annotation-<split>.csv` (pixel integers, -1 missing) and `<prefix>-pairs-<split>.csv`.

    frame_columns: add each row's `height:width`, so frames other than the prefix's default survive.
    Images are not written here; they belong in `root/<split>/<name>`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    header = "name:keypoints_y:keypoints_x" + (":height:width" if frame_columns else "")
    rows = [header]
    for name, pose in poses.items():
        xy = np.where(pose.visible[:, None], np.rint(pose.xy), MISSING).astype(int)
        row = f"{name}:{json.dumps(xy[:, 1].tolist())}:{json.dumps(xy[:, 0].tolist())}"
        rows.append(row + (f":{pose.height}:{pose.width}" if frame_columns else ""))
    annotation = root / f"{prefix}-annotation-{split}.csv"
    annotation.write_text("\n".join(rows) + "\n")
    pair_file = root / f"{prefix}-pairs-{split}.csv"
    pair_file.write_text("from,to\n" + "".join(f"{p.source},{p.target}\n" for p in pairs))
    return annotation, pair_file


def write_gfla(root: str | Path, split: str, pairs: list[PairRecord], poses: dict[str, Pose]) -> Path:
    """Write `<split>_pairs.txt` (one line per pair: target,source) and `pose/<name>.txt` in the 256x256 frame."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, pose in poses.items():
        path = gfla_pose_path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{x:g} {y:g}\n" for x, y in pose.to_gfla()))
    pair_file = root / f"{split}_pairs.txt"
    lines = []
    for pair in pairs:
        fields = [pair.source]
        fields.insert(GFLA_TARGET_FIELD, pair.target)
        lines.append(",".join(fields))
    pair_file.write_text("\n".join(lines) + "\n")
    return pair_file


def write_authors(root: str | Path, split: str, pairs: list[PairRecord], poses: dict[str, Pose]) -> Path:
    """Write `<split>_data.json` and `normalized_pose_txt/<stem>.txt` (normalised x y, -1 missing)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, pose in poses.items():
        path = authors_pose_path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # repr of the float32 value read back as float32 is exact, so the formats agree bit for bit
        path.write_text("".join(f"{float(x)!r} {float(y)!r}\n" for x, y in pose.normalized()))
    pair_file = root / f"{split}_data.json"
    pair_file.write_text(json.dumps([{"source_image": p.source, "target_image": p.target} for p in pairs], indent=1))
    return pair_file
