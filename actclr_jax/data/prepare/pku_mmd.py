"""PKU-MMD parts I and II: parsers, trimmed clips and untrimmed sequences.

Raw layout expected under `raw_dir` (one tree per part; the official archives
unpack to `PKU_Skeleton_Renew/`, `Train_Label_PKU_final/` and `Split/` for part I,
which are renamed or linked to the names below):

  skeleton/<video>.txt   one line per frame, 150 whitespace-separated floats:
                         body 1 then body 2, each 25 joints x (x, y, z) in NTU
                         (Kinect v2) joint order, metres; body 2 is all zeros
                         when only one person is present.
  label/<video>.txt      one action instance a line, `class,start,end,confidence`:
                         class 1..51, frames 1-based and inclusive (the instance
                         covers skeleton lines start..end), confidence a number
                         (1 or 2 in the dataset; kept only for validation).
  split/cross-subject.txt, split/cross-view.txt
                         "Training videos:" header line, then the training
                         video names, comma-separated (`0002-L, 0002-M, ...`);
                         then a header starting with "Validat" (the real file
                         says "Validataion videos:") and the validation names.
                         Names may also follow the colon on the header line or
                         run over several lines; trailing commas are ignored.
                         `cross_subject.txt` and `cross-subject_v2.txt` style
                         names (part II) are accepted too.

Outputs under `out_dir`:
  {xsub,xview}/{train,val}_data.npy   (N, 3, max_frames, 25, 2) float32 clips, one
      per label row, centre-cropped to max_frames or zero-padded at the end;
  {xsub,xview}/{train,val}_label.pkl  (sample names `<video>_<row>`, class - 1), where
      row is the 0-based index of the label row in its file;
  untrimmed/{xsub,xview}/{train,val}_frames.npy        (sum_T, 3, 25, 2) float32,
      the whole videos concatenated;
  untrimmed/{xsub,xview}/{train,val}_frame_labels.npy  (sum_T,) int32, class - 1 of
      each frame, -1 for background (no label row covers it). Where label rows
      overlap, the later row in the file wins and a warning is logged;
  untrimmed/{xsub,xview}/{train,val}_offsets.npy       (N + 1,) int64 boundaries;
  untrimmed/{xsub,xview}/{train,val}_names.pkl         the N video names.
Videos are written in split-file order. Large outputs are streamed to disk
(`writer.ArrayWriter`), so only the parsed videos are held in memory.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import NamedTuple

from absl import logging
import numpy as np

from actclr_jax.data import io, registry
from actclr_jax.data.prepare import common, writer

NUM_JOINTS = 25
NUM_BODIES = 2
NUM_CLASSES = registry.get("pku_mmd1").num_classes  # parts I and II share the 51 classes
LAYOUT = registry.get("pku_mmd1").layout
VALUES_PER_FRAME = NUM_BODIES * NUM_JOINTS * 3
SPLIT_FILES = {
    "xsub": ("cross-subject.txt", "cross_subject.txt", "cross-subject_v2.txt",
             "cross_subject_v2.txt"),
    "xview": ("cross-view.txt", "cross_view.txt", "cross-view_v2.txt", "cross_view_v2.txt"),
}

_VIDEO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class LabelRow(NamedTuple):
  """One action instance: 1-based class, 1-based inclusive frames, confidence."""
  cls: int
  start: int
  end: int
  confidence: float


def read_skeleton(path: str) -> np.ndarray:
  """Reads `skeleton/<video>.txt` -> (T, 3, 25, 2) float32 (xyz, joints, bodies)."""
  table = common.read_table(path, VALUES_PER_FRAME)
  if len(table) == 0:
    raise io.DataError(f"{path}: empty skeleton file (no frames)")
  frames = table.reshape(len(table), NUM_BODIES, NUM_JOINTS, 3).transpose(0, 3, 2, 1)
  return np.ascontiguousarray(frames, dtype=np.float32)


def read_labels(path: str, num_frames: int | None = None) -> list[LabelRow]:
  """Reads `label/<video>.txt` -> its rows; checks them against the video's `num_frames`."""
  try:
    with open(path, "r", encoding="ascii") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise io.DataError(f"{path}: cannot read: {e}") from e
  rows = []
  for i, line in enumerate(lines):
    where = f"{path}: line {i + 1}"
    if not line.strip():
      continue
    fields = [f.strip() for f in line.split(",")]
    while fields and not fields[-1]:
      fields.pop()
    if len(fields) != 4:
      raise io.DataError(f"{where}: expected 'class,start,end,confidence', got {line.strip()!r}")
    try:
      cls, start, end = (int(f) for f in fields[:3])
      confidence = float(fields[3])
    except ValueError as e:
      raise io.DataError(f"{where}: non-numeric field in {line.strip()!r}") from e
    if not 1 <= cls <= NUM_CLASSES:
      raise io.DataError(f"{where}: class {cls} outside 1..{NUM_CLASSES}")
    if not 1 <= start <= end:
      raise io.DataError(f"{where}: frames {start}..{end} are not 1 <= start <= end")
    if num_frames is not None and end > num_frames:
      raise io.DataError(f"{where}: frames {start}..{end} run past the video's {num_frames} "
                         f"frames")
    rows.append(LabelRow(cls, start, end, confidence))
  if not rows:
    raise io.DataError(f"{path}: no label rows")
  return rows


def read_split(path: str) -> tuple[list[str], list[str]]:
  """Reads a PKU-MMD split file -> (training video names, validation video names)."""
  try:
    with open(path, "r", encoding="utf-8-sig") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise io.DataError(f"{path}: cannot read: {e}") from e
  lists: dict[str, list[str]] = {}
  where_of: dict[str, int] = {}
  section = None
  for i, line in enumerate(lines):
    text = line.strip()
    header = next((s for s, prefix in (("train", "training"), ("val", "validat"))
                   if text.lower().startswith(prefix)), None)
    if header is not None:
      section, text = header, text.partition(":")[2]
      if section in lists:
        raise io.DataError(f"{path}: line {i + 1}: second {section} header")
      lists[section] = []
    elif text and section is None:
      raise io.DataError(f"{path}: line {i + 1}: expected a 'Training videos:' header, got "
                         f"{text[:40]!r}")
    for name in (n.strip() for n in text.split(",")):
      if not name:
        continue
      if _VIDEO_RE.fullmatch(name) is None:
        raise io.DataError(f"{path}: line {i + 1}: {name!r} is not a video name "
                           f"(names are comma-separated)")
      if name in where_of:
        raise io.DataError(f"{path}: line {i + 1}: video {name} already listed on line "
                           f"{where_of[name]}")
      where_of[name] = i + 1
      lists[section].append(name)
  for section, header in (("train", "Training videos:"), ("val", "Validation videos:")):
    if section not in lists:
      raise io.DataError(f"{path}: no '{header}' header")
    if not lists[section]:
      raise io.DataError(f"{path}: the {section} list is empty")
  return lists["train"], lists["val"]


def find_split_file(raw_dir: str, split: str) -> str:
  """Path of the `split` ('xsub' or 'xview') split file under `raw_dir/split/`."""
  folder = os.path.join(raw_dir, "split")
  for name in SPLIT_FILES[split]:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  raise io.DataError(
      f"{folder}: no {split} split file (looked for {', '.join(SPLIT_FILES[split])})")


def frame_labels(rows: list[LabelRow], num_frames: int, where: str = "") -> np.ndarray:
  """(T,) int32 per-frame 0-based class, -1 where no row covers the frame."""
  labels = np.full(num_frames, -1, dtype=np.int32)
  for row in rows:
    span = labels[row.start - 1:row.end]
    if (span >= 0).any():
      logging.warning("%s: label rows overlap on frames %d..%d; the later row (class %d) wins",
                      where, row.start, row.end, row.cls)
    span[:] = row.cls - 1
  return labels


def clip(frames: np.ndarray, row: LabelRow) -> np.ndarray:
  """The (end - start + 1, 3, 25, 2) frames a 1-based inclusive label row covers."""
  return frames[row.start - 1:row.end]


def _write_clips(split_dir: str, part: str, videos: list[str], parsed: dict,
                 max_frames: int) -> int:
  entries = [(video, r, row) for video in videos for r, row in enumerate(parsed[video][1])]

  def samples():
    for video, _, row in io.progress(entries, desc=f"{os.path.basename(split_dir)}/{part} clips"):
      data = io.pad_or_crop_frames(clip(parsed[video][0], row), max_frames)
      yield data.transpose(1, 0, 2, 3)

  return writer.write_split(split_dir, part, samples(),
                            [f"{video}_{r}" for video, r, _ in entries],
                            [row.cls - 1 for _, _, row in entries],
                            (3, max_frames, NUM_JOINTS, NUM_BODIES))


def _write_untrimmed(split_dir: str, part: str, videos: list[str], parsed: dict) -> None:
  lengths = [len(parsed[video][0]) for video in videos]
  offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
  total = int(offsets[-1])
  with writer.ArrayWriter(os.path.join(split_dir, f"{part}_frames.npy"),
                          (3, NUM_JOINTS, NUM_BODIES), total, np.float32) as frames, \
       writer.ArrayWriter(os.path.join(split_dir, f"{part}_frame_labels.npy"), (), total,
                          np.int32) as labels:
    for video in videos:
      frames.extend(parsed[video][0])
      labels.extend(parsed[video][2])
  io.save_npy(os.path.join(split_dir, f"{part}_offsets.npy"), offsets)
  io.save_pickle(os.path.join(split_dir, f"{part}_names.pkl"), list(videos))


def load_untrimmed(split_dir: str, part: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """Loads `{split_dir}/{part}_*` -> per video (frames (T, 3, 25, 2), labels (T,) int32).

  The frames are read-only views of a memory-mapped file.
  """
  prefix = os.path.join(split_dir, part)
  try:
    frames = np.load(prefix + "_frames.npy", mmap_mode="r")
    labels = np.load(prefix + "_frame_labels.npy", mmap_mode="r")
    offsets = np.load(prefix + "_offsets.npy")
    with open(prefix + "_names.pkl", "rb") as f:
      names = pickle.load(f)
  except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
    raise io.DataError(f"{prefix}_*: cannot load the untrimmed split: {e}") from e
  if frames.shape[1:] != (3, NUM_JOINTS, NUM_BODIES) or labels.shape != frames.shape[:1]:
    raise io.DataError(f"{prefix}_frames.npy / _frame_labels.npy: shapes {frames.shape} and "
                       f"{labels.shape} do not match (sum_T, 3, 25, 2) and (sum_T,)")
  if (offsets.ndim != 1 or len(offsets) != len(names) + 1 or offsets[0] != 0 or
      offsets[-1] != len(frames) or np.any(np.diff(offsets) < 0)):
    raise io.DataError(f"{prefix}_offsets.npy: not {len(names) + 1} increasing boundaries "
                       f"from 0 to {len(frames)}")
  return [(frames[a:b], labels[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def prepare(raw_dir: str, out_dir: str, *, part: int = 1, skip_bad: bool = False,
            max_frames: int = 300) -> dict:
  """Parses the videos named in the split files and writes clips and untrimmed sequences.

  `part` (1 or 2) only names the data in messages and the summary: the two parts differ in
  which files `raw_dir` holds. Returns {'layout': 'ntu', 'part', 'splits': {'xsub'|'xview':
  {'train': clips, 'val': clips}}, 'untrimmed': {'xsub'|'xview': {'train': videos, 'val':
  videos}}, 'bad': [(file, message)], 'unlisted': skeleton files in no split list}.
  """
  if part not in (1, 2):
    raise ValueError(f"PKU-MMD part must be 1 or 2, got {part}")
  if not os.path.isdir(raw_dir):
    raise io.DataError(f"{raw_dir}: PKU-MMD part {part} folder not found")
  splits = {}
  for split in registry.get(f"pku_mmd{part}").splits:
    path = find_split_file(raw_dir, split)
    splits[split] = dict(zip(("train", "val"), read_split(path)))
  listed = sorted({v for lists in splits.values() for names in lists.values() for v in names})
  skeleton_dir = os.path.join(raw_dir, "skeleton")
  label_dir = os.path.join(raw_dir, "label")
  present = ({f[:-4] for f in os.listdir(skeleton_dir) if f.endswith(".txt")}
             if os.path.isdir(skeleton_dir) else set())
  unlisted = sorted(present - set(listed))

  bad: list[tuple[str, str]] = []
  parsed = {}  # video -> (frames (T, 3, 25, 2), label rows, frame labels (T,))
  for video in io.progress(listed, desc=f"pku-mmd part {part}"):
    skeleton_path = os.path.join(skeleton_dir, video + ".txt")
    label_path = os.path.join(label_dir, video + ".txt")
    try:
      if video not in present:
        raise io.DataError(f"{skeleton_path}: video {video} is in the split lists but its "
                           f"skeleton file is missing")
      if not os.path.isfile(label_path):
        raise io.DataError(f"{label_path}: video {video} has no label file")
      frames = read_skeleton(skeleton_path)
      rows = read_labels(label_path, len(frames))
    except io.DataError as e:
      bad.append((skeleton_path if str(e).startswith(skeleton_path) else label_path, str(e)))
      continue
    parsed[video] = (frames, rows, frame_labels(rows, len(frames), label_path))

  common.report_bad_files(bad, f"PKU-MMD part {part}", skip_bad)

  clip_counts, video_counts = {}, {}
  for split, lists in splits.items():
    clip_counts[split], video_counts[split] = {}, {}
    for subset, names in lists.items():
      videos = [v for v in names if v in parsed]
      clip_counts[split][subset] = _write_clips(
          os.path.join(out_dir, split), subset, videos, parsed, max_frames)
      _write_untrimmed(os.path.join(out_dir, "untrimmed", split), subset, videos, parsed)
      video_counts[split][subset] = len(videos)
  return {
      "layout": LAYOUT,
      "part": part,
      "splits": clip_counts,
      "untrimmed": video_counts,
      "bad": bad,
      "unlisted": unlisted,
  }
