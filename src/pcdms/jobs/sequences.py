"""Pose sequences that drive `pcdms animate`: read from a folder of OpenPose JSON files or skeleton pictures
(ControlNet pose renders), extracted from a video, or made by a built-in motion (`pcdms.jobs.motions`); then steadied
over time and fitted to the source's framing.

A sequence has one entry per frame: a `Pose`, or None where the frame has none, with the reason kept by frame
index (a file that cannot be read, a video frame with no person), so nothing is silently dropped.

- `smooth`: a joint missing for at most `max_gap` frames between two sightings is filled in linearly, and
  each joint's track is smoothed with a Gaussian over time (per run of frames where it is seen), which takes
  out the frame-to-frame jitter of a pose extractor. Frames with no person for at most `max_gap` frames
  are filled the same way.
- `fit_to_source`: a video's person can stand anywhere in a frame of any shape. The sequence is moved and
  scaled so that its person's median neck sits on the source's neck and its median torso length (neck to
  hips) equals the source's, in the source pose's frame. Motion within the sequence is kept.
- `fit_in_frame`: a joint off the canvas is dropped on its way into the model (an arm raised over a head that
  touches the top edge would vanish). A built-in motion is fitted inside its frame with one scale and shift
  for every frame, so the person stays steady; `off_canvas` names the frames where a sequence leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcdms.errors import UserError, warn
from pcdms.pose import JOINT, JOINTS, NUM_JOINTS, Pose, read_openpose_json, write_openpose_json

NECK, HIPS = JOINT["neck"], (JOINT["r_hip"], JOINT["l_hip"])
#: file endings read as skeleton pictures in a --poses folder
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class PoseSequence:
    """poses: one per frame (None: no pose); names: a label per frame (file name or 'frame N');
    problems: frame index -> why it has no pose; fps: the video's frame rate, when it came from one."""

    poses: list[Pose | None]
    names: list[str]
    problems: dict[int, str] = field(default_factory=dict)
    fps: float | None = None
    filled: list[int] = field(default_factory=list)  # frames whose person was filled in from neighbours

    def __len__(self) -> int:
        return len(self.poses)


# ---------------------------------------------------------------------- sources
def from_folder(folder: str | Path, limit: int | None = None) -> PoseSequence:
    """Every pose file in `folder` in name order: OpenPose `*.json`, or a skeleton picture (an OpenPose/ControlNet/
    DWPose render, read by `pcdms.pose.picture`) in any of `PICTURE_SUFFIXES`. A file that cannot be read, or a picture
    that is not a skeleton picture (a photo: its description says what it looked like), is a problem of its frame;
    a folder where no file gives a pose is an error naming the first ones."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".json", *PICTURE_SUFFIXES)
                   and not p.name.startswith(".") and p.is_file())
    if not files:
        raise UserError(f"--poses {folder}: no .json pose files or skeleton pictures "
                        f"({', '.join(PICTURE_SUFFIXES)}) in the folder")
    files = files[:limit] if limit is not None else files
    sequence = PoseSequence([], [p.name for p in files])
    for index, path in enumerate(files):
        try:
            pose = read_openpose_json(path) if path.suffix.lower() == ".json" else _read_picture(path)
        except UserError as err:
            pose, sequence.problems[index] = None, str(err)
        else:
            if pose is None:
                sequence.problems[index] = f"{path.name}: lists no person"
        sequence.poses.append(pose)
    if all(pose is None for pose in sequence.poses):
        first = "; ".join(sequence.problems[i] for i in sorted(sequence.problems)[:2])
        raise UserError(f"--poses {folder}: no file in the folder gives a pose ({first})")
    return sequence


def _read_picture(path: Path) -> Pose:
    """The pose drawn in skeleton picture `path`; a UserError naming the file says what it looked like if it
    is not one. A photo is not sent to MediaPipe: a folder of frames is a video's job (`from_video`). The
    picture itself is not kept (a long sequence of them would fill memory): frames are drawn from keypoints."""
    from pcdms.imageio import load_image
    from pcdms.pose.picture import read_skeleton_picture

    pose = read_skeleton_picture(load_image(path), path.name).pose
    return Pose(pose.xy, pose.visible, pose.height, pose.width)


def from_video(path: str | Path, cache: str | Path, limit: int | None = None,
               progress: bool | str = True) -> PoseSequence:
    """Extract a pose per video frame (mediapipe, `pcdms.pose.extract`). Each frame's pose is written to
    `cache/frame_NNNNN.json` as soon as it is found and read back on a rerun, so a killed job does not redo it."""
    from pcdms.pose.extract import PoseExtractor
    from pcdms.progress import Progress, resolve_mode
    from pcdms.jobs.video import read_frames, video_info

    info = video_info(path)
    total = info.frames if limit is None else min(limit, info.frames)
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    sequence = PoseSequence([], [f"frame {i}" for i in range(total)], fps=info.fps or None)
    extractor = None
    bar = Progress(total, "poses from video", "frame", resolve_mode(progress))
    try:
        frames = read_frames(path, limit=total)
        for index in range(total):
            frame = next(frames, None)
            if frame is None:  # fewer frames than the count said: stop at the last one decoded
                sequence.names = sequence.names[:index]
                break
            file = cache / f"frame_{index:05d}.json"
            if file.is_file():
                pose = read_openpose_json(file)
            else:
                from PIL import Image

                extractor = extractor or PoseExtractor()
                found = extractor(Image.fromarray(frame))
                pose = None if found is None else found[0]
                tmp = file.with_name(f".{file.name}.tmp")
                write_openpose_json(tmp, pose, None if found is None else found[1])
                tmp.replace(file)
            if pose is None:
                sequence.problems[index] = "no person found"
            sequence.poses.append(pose)
            bar.update(1)
    finally:
        bar.close()
        if extractor is not None:
            extractor.close()
    return sequence


def from_motion(name: str, source_pose: Pose, frames: int | None = None) -> PoseSequence:
    """The built-in motion `name` made from the source pose, fitted inside its frame (an `InputWarning` says
    when that moved or shrank it, naming the frames that reached outside)."""
    from pcdms.jobs.motions import make_motion

    poses = make_motion(name, source_pose, frames)
    outside = off_canvas(poses)
    if outside:
        poses, scale, shift = fit_in_frame(poses)
        how = [f"scaled to {100 * scale:.0f}%"] if scale < 0.995 else []
        how += [f"moved by ({shift[0]:+.1f}, {shift[1]:+.1f}) px"] if np.abs(shift).max() >= 0.05 else []
        warn(f"motion '{name}' reaches off the {source_pose.height}x{source_pose.width} canvas of the source pose "
             f"in frame(s) {describe_off_canvas(outside)}; the whole motion is {' and '.join(how) or 'adjusted'} "
             "so every joint stays in the frame")
    return PoseSequence(list(poses), [f"{name} {i}" for i in range(len(poses))])


# ---------------------------------------------------------------------- the canvas
def off_canvas(poses: Sequence[Pose | None]) -> dict[int, list[str]]:
    """Frame index -> the names of its visible joints outside its frame (frames with none are left out)."""
    outside = {}
    for i, pose in enumerate(poses):
        if pose is not None and (pose.visible & ~pose.inside()).any():
            outside[i] = [JOINTS[j] for j in np.flatnonzero(pose.visible & ~pose.inside())]
    return outside


def describe_off_canvas(outside: dict[int, list[str]]) -> str:
    """{3: ['r_wrist'], 4: ['r_wrist', 'l_wrist'], 7: ['l_wrist']} -> '3-4, 7 (r_wrist, l_wrist)'."""
    index = sorted(outside)
    runs, start = [], index[0]
    for prev, cur in zip(index, [*index[1:], None]):
        if cur != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    joints = sorted({j for names in outside.values() for j in names}, key=JOINTS.index)
    return f"{', '.join(runs)} ({', '.join(joints)})"


def fit_in_frame(poses: Sequence[Pose], margin: float = 0.02) -> tuple[list[Pose], float, np.ndarray]:
    """Every pose moved by one scale and shift so that all their visible joints lie inside the frame, `margin`
    (a share of the longer side) from its edges: (poses, scale, (dx, dy) in pixels after the scaling).

    The scale is 1 unless the poses' extent is larger than the frame, and shrinks about the bottom centre of
    their box (a standing person keeps their feet where they were); then the box moves the least that puts
    it inside. All poses share the frame of the first.
    """
    frame = poses[0]
    pad = margin * max(frame.height, frame.width)
    size = np.array([frame.width, frame.height], dtype=np.float64)
    xy = np.concatenate([p.xy[p.visible] for p in poses]).astype(np.float64)
    low, high = xy.min(axis=0), xy.max(axis=0)
    scale = float(min(1.0, *((size - 2 * pad) / np.maximum(high - low, 1e-6))))
    anchor = np.array([(low[0] + high[0]) / 2, high[1]])
    low, high = anchor + scale * (low - anchor), anchor + scale * (high - anchor)
    # the least move into [pad, size - pad]: the box fits, so at most one side of each axis needs it
    shift = np.where(low < pad, pad - low, np.where(high > size - pad, size - pad - high, 0.0))
    return [Pose((p.xy - anchor) * scale + anchor + shift, p.visible, p.height, p.width) for p in poses], scale, shift


# ---------------------------------------------------------------------- steadying
def _fill_gaps(values: np.ndarray, seen: np.ndarray, max_gap: int) -> np.ndarray:
    """bool (T,) seen after filling runs of at most `max_gap` unseen frames between two seen ones; `values`
    (T, 2) is interpolated in place over them."""
    seen = seen.copy()
    index = np.flatnonzero(seen)
    for a, b in zip(index[:-1], index[1:]):
        if 1 < b - a <= max_gap + 1:
            t = (np.arange(a + 1, b) - a) / (b - a)
            values[a + 1:b] = values[a] + t[:, None] * (values[b] - values[a])
            seen[a + 1:b] = True
    return seen


def _runs(seen: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], seen.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def smooth(sequence: PoseSequence, sigma: float = 1.0, max_gap: int = 2) -> PoseSequence:
    """Fill short gaps and smooth each joint over time (module docstring). `sigma` in frames; 0: no smoothing."""
    from scipy.ndimage import gaussian_filter1d

    poses = sequence.poses
    present = np.array([p is not None for p in poses])
    if not present.any():
        return sequence
    frame = next(p for p in poses if p is not None)
    xy = np.zeros((len(poses), NUM_JOINTS, 2))
    seen = np.zeros((len(poses), NUM_JOINTS), dtype=bool)
    for t, pose in enumerate(poses):
        if pose is not None:
            pose = pose.resized(frame.height, frame.width)
            xy[t], seen[t] = pose.xy, pose.visible
    person = _fill_gaps(np.zeros((len(poses), 2)), present, max_gap)
    for j in range(NUM_JOINTS):
        seen[:, j] = _fill_gaps(xy[:, j], seen[:, j], max_gap) & person
        if sigma > 0:
            for start, stop in _runs(seen[:, j]):
                xy[start:stop, j] = gaussian_filter1d(xy[start:stop, j], sigma, axis=0, mode="nearest")
    out = [Pose(xy[t], seen[t], frame.height, frame.width) if person[t] else None for t in range(len(poses))]
    filled = [t for t in range(len(poses)) if person[t] and not present[t]]
    problems = {t: why for t, why in sequence.problems.items() if out[t] is None}
    return PoseSequence(out, sequence.names, problems, sequence.fps, sorted(set(sequence.filled) | set(filled)))


def _anchor(pose: Pose) -> tuple[np.ndarray, float] | None:
    """(neck position, torso length) of a pose, or None without a neck and a hip."""
    hips = [j for j in HIPS if pose.visible[j]]
    if not pose.visible[NECK] or not hips:
        return None
    torso = float(np.linalg.norm(pose.xy[hips].mean(axis=0) - pose.xy[NECK]))
    return (pose.xy[NECK].astype(np.float64), torso) if torso > 1e-3 else None


def fit_to_source(sequence: PoseSequence, source_pose: Pose) -> PoseSequence:
    """The sequence moved and scaled into the source pose's frame (module docstring)."""
    source = _anchor(source_pose)
    if source is None:
        raise UserError("fitting the poses to the source needs the source pose's neck and a hip; "
                        "give --source-pose, or --framing as-is")
    anchors = [_anchor(p) if p is not None else None for p in sequence.poses]  # in the sequence's own pixels
    known = [a for a in anchors if a is not None]
    if not known:
        raise UserError("no frame of --poses shows a neck and a hip, so they cannot be fitted to the source; "
                        "use --framing as-is")
    neck = np.median(np.stack([a[0] for a in known]), axis=0)
    scale = source[1] / float(np.median([a[1] for a in known]))
    out: list[Pose | None] = []
    for pose in sequence.poses:
        if pose is None:
            out.append(None)
            continue
        xy = (pose.xy - neck) * scale + source[0]
        out.append(Pose(xy, pose.visible, source_pose.height, source_pose.width))
    return PoseSequence(out, sequence.names, dict(sequence.problems), sequence.fps, list(sequence.filled))


def pose_fingerprint(poses: Sequence[Pose | None]) -> str:
    """A short hash of a sequence's poses (to tell whether a half-finished output was made from it)."""
    import hashlib

    digest = hashlib.sha256()
    for pose in poses:
        digest.update(b"none" if pose is None else np.round(pose.normalized(), 4).tobytes())
    return digest.hexdigest()[:16]
