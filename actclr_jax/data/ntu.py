"""NTU RGB+D 60/120: the raw `.skeleton` parser, body selection, splits and `prepare`.

A `.skeleton` file is text: the frame count; then per frame a body count, and per body a
line of 10 body values (64-bit tracking id first), the joint count (25) and 25 lines of 12
joint values (x y z depthX depthY colorX colorY orientationW X Y Z trackingState).

`prepare` writes the layout of the ActCLR code family: `{out_dir}/{split}/{train,val}_data.npy`
float32 (N, 3, max_frames, 25, 2) and `{train,val}_label.pkl` = (sample_names, labels), with
splits xsub/xview (NTU-60) or xsub/xset (NTU-120).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources
import logging
import multiprocessing
import os
import pickle
import re
import tempfile
from typing import Iterable

import numpy as np

from actclr_jax.data import io

NUM_JOINTS = 25
MAX_BODIES = 2

BODY_FIELDS = ("clipped_edges", "hand_left_confidence", "hand_left_state",
               "hand_right_confidence", "hand_right_state", "is_restricted", "lean_x", "lean_y",
               "tracking_state")
JOINT_FIELDS = ("x", "y", "z", "depth_x", "depth_y", "color_x", "color_y", "orientation_w",
                "orientation_x", "orientation_y", "orientation_z", "tracking_state")

BODY_SELECTIONS = ("energy", "file_order")
VARIANTS = ("ntu60", "ntu120")

# Split protocols (NOTES.md).
XSUB60_TRAIN_PERFORMERS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
XSUB120_TRAIN_PERFORMERS = XSUB60_TRAIN_PERFORMERS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
     89, 91, 92, 93, 94, 95, 97, 98, 100, 103))
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
SPLITS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}
# NTU-60 is the first 17 setups and 60 actions of NTU-120.
NTU60_MAX_SETUP = 17
NTU60_MAX_ACTION = 60

_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")


# ----------------------------------------------------------------------------------------------
# Parsing.


@dataclasses.dataclass(frozen=True)
class Body:
  """One body in one frame.

  Attributes:
    tracking_id: the sensor's 64-bit tracking id (an exact integer, never a float).
    info: (9,) float64, the other 9 body values in `BODY_FIELDS` order.
    joints: (25, 12) float64, the joint values in `JOINT_FIELDS` order.
  """

  tracking_id: int
  info: np.ndarray
  joints: np.ndarray

  @property
  def xyz(self) -> np.ndarray:
    """(25, 3) camera-space joint positions in metres."""
    return self.joints[:, :3]


@dataclasses.dataclass(frozen=True)
class SkeletonFile:
  """Every field of a `.skeleton` file: `frames[t]` lists the bodies of frame t in file order."""

  path: str
  frames: list[list[Body]]

  @property
  def num_frames(self) -> int:
    return len(self.frames)

  @property
  def body_counts(self) -> list[int]:
    """Number of bodies listed in each frame."""
    return [len(bodies) for bodies in self.frames]

  @property
  def tracking_ids(self) -> list[int]:
    """Distinct tracking ids in order of first appearance."""
    return list(dict.fromkeys(b.tracking_id for bodies in self.frames for b in bodies))


class _Lines:
  """A cursor over the lines of a file that reports 1-based line numbers in errors."""

  def __init__(self, path: str, lines: list[str]):
    self.path = path
    self.lines = lines
    self.pos = 0  # 0-based index of the next line.

  def error(self, line: int, message: str) -> io.DataError:
    return io.DataError(f"{self.path}: line {line}: {message}")

  def eof_error(self, what: str) -> io.DataError:
    return self.error(len(self.lines) + 1,
                      f"unexpected end of file (truncated?) while reading {what}")

  def next(self, what: str) -> tuple[int, str]:
    if self.pos >= len(self.lines):
      raise self.eof_error(what)
    self.pos += 1
    return self.pos, self.lines[self.pos - 1]

  def integer(self, what: str) -> int:
    line, text = self.next(what)
    tokens = text.split()
    try:
      if len(tokens) != 1:
        raise ValueError
      value = int(tokens[0])
    except ValueError:
      raise self.error(line, f"expected {what} (one integer), got {text.strip()!r}") from None
    if value < 0:
      raise self.error(line, f"{what} is negative ({value})")
    return value


def _parse_body(cursor: _Lines, what: str) -> Body:
  line, text = cursor.next(f"the body values of {what}")
  tokens = text.split()
  if len(tokens) != 1 + len(BODY_FIELDS):
    raise cursor.error(line, f"expected {1 + len(BODY_FIELDS)} body values for {what}, got "
                       f"{len(tokens)}: {text.strip()!r}")
  try:
    tracking_id = int(tokens[0])
    info = np.array(tokens[1:], dtype=np.float64)
  except ValueError:
    raise cursor.error(line, f"non-numeric body values for {what}: {text.strip()!r}") from None

  joint_count = cursor.integer(f"the joint count of {what}")
  if joint_count != NUM_JOINTS:
    raise cursor.error(cursor.pos, f"joint count is {joint_count}, expected {NUM_JOINTS} "
                       f"({what})")
  start = cursor.pos  # 0-based index of the first joint line.
  block = cursor.lines[start:start + NUM_JOINTS]
  if len(block) < NUM_JOINTS:
    raise cursor.eof_error(f"joint {len(block) + 1} of {what}")
  rows = [text.split() for text in block]
  try:
    joints = np.array(rows, dtype=np.float64)
  except ValueError:
    joints = None
  if joints is None or joints.shape != (NUM_JOINTS, len(JOINT_FIELDS)):
    # Slow path, only for bad files: find the offending line.
    for j, row in enumerate(rows):
      if len(row) != len(JOINT_FIELDS):
        raise cursor.error(start + j + 1, f"expected {len(JOINT_FIELDS)} values for joint "
                           f"{j + 1} of {what}, got {len(row)}: {block[j].strip()!r}")
      try:
        [float(token) for token in row]
      except ValueError:
        raise cursor.error(start + j + 1, f"non-numeric value for joint {j + 1} of {what}: "
                           f"{block[j].strip()!r}") from None
    raise cursor.error(start + 1, f"unreadable joint block of {what}")
  finite = np.isfinite(joints[:, :3]).all(axis=1)
  if not finite.all():
    j = int(np.argmin(finite))
    raise cursor.error(start + j + 1, f"NaN or inf coordinate for joint {j + 1} of {what}: "
                       f"{block[j].strip()!r}")
  cursor.pos = start + NUM_JOINTS
  return Body(tracking_id=tracking_id, info=info, joints=joints)


def parse_skeleton_file(path: str) -> SkeletonFile:
  """Reads every field of an NTU `.skeleton` file.

  Raises DataError naming the file and line for: an empty file, a truncated file (end of file
  before the declared frames, bodies or joints), a joint count other than 25, a wrong number of
  values or a non-numeric value on a line, a NaN or inf x/y/z coordinate, and non-blank content
  after the declared frames.
  """
  try:
    with open(path, "rb") as f:
      text = f.read().decode("latin-1")
  except OSError as e:
    raise io.DataError(f"{path}: cannot read: {e}") from e
  if not text.strip():
    raise io.DataError(f"{path}: line 1: empty file")
  cursor = _Lines(path, text.splitlines())
  num_frames = cursor.integer("the frame count")
  frames = []
  for t in range(num_frames):
    num_bodies = cursor.integer(f"the body count of frame {t + 1} of {num_frames}")
    frames.append([_parse_body(cursor, f"body {m + 1} of frame {t + 1}")
                   for m in range(num_bodies)])
  for index in range(cursor.pos, len(cursor.lines)):
    if cursor.lines[index].strip():
      raise cursor.error(index + 1, f"unexpected content after the {num_frames} declared frames: "
                         f"{cursor.lines[index].strip()[:60]!r}")
  return SkeletonFile(path=path, frames=frames)


# ----------------------------------------------------------------------------------------------
# Body selection.


def _file_order_slots(skeleton: SkeletonFile, max_bodies: int) -> list[dict[int, np.ndarray]]:
  """The authors' rule: the m-th body listed in a frame fills slot m."""
  slots = [{} for _ in range(max_bodies)]
  for t, bodies in enumerate(skeleton.frames):
    for m, body in enumerate(bodies[:max_bodies]):
      slots[m][t] = body.xyz
  return slots


def motion_energy(xyz: np.ndarray) -> float:
  """Sum over joints and axes of the temporal variance of a (T, V, 3) track."""
  return float(xyz.var(axis=0).sum()) if len(xyz) > 1 else 0.0


def _energy_slots(skeleton: SkeletonFile, max_bodies: int,
                  min_track_frames: int) -> list[dict[int, np.ndarray]]:
  """Ranks tracks (bodies grouped by tracking id) by motion energy and fills the slots greedily.

  Tracks shorter than `min_track_frames` (sensor noise, typically) are used only when no track
  is that long. A track goes to the first slot whose frames it does not overlap, so a person
  who is re-detected under a new id continues in the same slot.
  """
  tracks: dict[tuple[int, int], dict[int, np.ndarray]] = {}
  for t, bodies in enumerate(skeleton.frames):
    seen: dict[int, int] = {}
    for body in bodies:
      # A repeated id within one frame is a distinct body; keep it as a separate track.
      k = seen[body.tracking_id] = seen.get(body.tracking_id, -1) + 1
      tracks.setdefault((body.tracking_id, k), {})[t] = body.xyz
  if not tracks:
    return [{} for _ in range(max_bodies)]
  candidates = [track for track in tracks.values() if len(track) >= min_track_frames]
  if not candidates:
    candidates = list(tracks.values())
  candidates.sort(key=lambda track: motion_energy(np.stack(list(track.values()))), reverse=True)
  slots: list[dict[int, np.ndarray]] = [{} for _ in range(max_bodies)]
  for track in candidates:
    for slot in slots:
      if slot.keys().isdisjoint(track.keys()):
        slot.update(track)
        break
  return slots


def to_array(skeleton: SkeletonFile, *, body_selection: str = "energy",
             drop_empty_frames: bool | None = None, max_bodies: int = MAX_BODIES,
             min_track_frames: int = 11) -> np.ndarray:
  """x, y, z of up to `max_bodies` bodies: (T', M, 25, 3) float32, zeros where a slot is empty.

  Args:
    skeleton: a parsed file.
    body_selection: 'energy' (default) groups bodies by tracking id, keeps the tracks of highest
      motion energy (ignoring tracks shorter than `min_track_frames` unless all are) and places
      each at its own frames; 'file_order' is the authors' rule (the m-th body listed in a frame
      goes to slot m; no denoising).
    drop_empty_frames: drop frames where no selected body is present (pyskl practice). None (the
      default) means True for 'energy' and False for 'file_order', so that 'file_order'
      reproduces the authors' arrays exactly.
    max_bodies: M.
    min_track_frames: see `body_selection`.

  Raises:
    DataError if the file has no body in any frame.
  """
  if body_selection not in BODY_SELECTIONS:
    raise ValueError(f"body_selection must be one of {BODY_SELECTIONS}, got {body_selection!r}")
  if drop_empty_frames is None:
    drop_empty_frames = body_selection == "energy"
  if body_selection == "energy":
    slots = _energy_slots(skeleton, max_bodies, min_track_frames)
  else:
    slots = _file_order_slots(skeleton, max_bodies)
  if not any(slots):
    raise io.DataError(f"{skeleton.path}: no body in any of the {skeleton.num_frames} frames")
  out = np.zeros((skeleton.num_frames, max_bodies, NUM_JOINTS, 3), dtype=np.float32)
  for m, slot in enumerate(slots):
    for t, xyz in slot.items():
      out[t, m] = xyz
  if drop_empty_frames:
    present = sorted(set().union(*slots))
    out = out[present]
  return out


def load_sample(path: str, *, body_selection: str = "energy",
                drop_empty_frames: bool | None = None, max_frames: int = 300) -> np.ndarray:
  """Parses `path` into one (3, max_frames, 25, 2) float32 sample (zero-padded / centre-cropped)."""
  array = to_array(parse_skeleton_file(path), body_selection=body_selection,
                   drop_empty_frames=drop_empty_frames)
  array = io.pad_or_crop_frames(array, max_frames)  # (T, M, V, C)
  return np.ascontiguousarray(array.transpose(3, 0, 2, 1))


# ----------------------------------------------------------------------------------------------
# Names, labels, splits.


@dataclasses.dataclass(frozen=True)
class SampleInfo:
  """The fields of a sample name `SsssCcccPpppRrrrAaaa` (all 1-based ids)."""

  setup: int
  camera: int
  performer: int
  replication: int
  action: int

  @property
  def label(self) -> int:
    """0-based class label (action id - 1)."""
    return self.action - 1


def parse_sample_name(name: str) -> SampleInfo:
  """Parses `SsssCcccPpppRrrrAaaa` (a file's base name, with or without `.skeleton`)."""
  base = os.path.basename(name)
  if base.endswith(".skeleton"):
    base = base[:-len(".skeleton")]
  match = _NAME_RE.match(base)
  if not match:
    raise io.DataError(f"{name}: not an NTU sample name of the form SsssCcccPpppRrrrAaaa")
  return SampleInfo(*(int(g) for g in match.groups()))


def in_variant(info: SampleInfo, variant: str) -> bool:
  """Whether a sample belongs to NTU-60 ('ntu60') or NTU-120 ('ntu120')."""
  if variant == "ntu60":
    return info.setup <= NTU60_MAX_SETUP and info.action <= NTU60_MAX_ACTION
  if variant == "ntu120":
    return True
  raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def split_part(info: SampleInfo, split: str, variant: str = "ntu60") -> str:
  """'train' or 'val' for a sample under split 'xsub', 'xview' or 'xset'."""
  if split == "xsub":
    performers = XSUB60_TRAIN_PERFORMERS if variant == "ntu60" else XSUB120_TRAIN_PERFORMERS
    return "train" if info.performer in performers else "val"
  if split == "xview":
    return "train" if info.camera in XVIEW_TRAIN_CAMERAS else "val"
  if split == "xset":
    return "train" if info.setup % 2 == 0 else "val"
  raise ValueError(f"unknown NTU split {split!r}")


def missing_samples(variant: str) -> frozenset[str]:
  """The standard list of samples with missing skeletons (302 for NTU-60, 535 for NTU-120)."""
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  name = "NTU60_missing.txt" if variant == "ntu60" else "NTU120_missing.txt"
  text = (importlib.resources.files("actclr_jax.data") / "resources" / name).read_text()
  return frozenset(line.strip() for line in text.splitlines() if line.strip())


# ----------------------------------------------------------------------------------------------
# Preparing a whole folder.


def find_skeleton_files(raw_dir: str) -> dict[str, str]:
  """Maps sample name -> path for every `*.skeleton` under `raw_dir` (recursively)."""
  if not os.path.isdir(raw_dir):
    raise io.DataError(f"{raw_dir}: no such directory (expected the NTU .skeleton files)")
  found: dict[str, str] = {}
  duplicates = []
  for root, dirs, files in os.walk(raw_dir):
    dirs.sort()
    for file in sorted(files):
      if not file.endswith(".skeleton"):
        continue
      name, path = file[:-len(".skeleton")], os.path.join(root, file)
      if name in found:
        duplicates.append(f"{found[name]} and {path}")
      found[name] = path
  if duplicates:
    raise io.DataError(f"{raw_dir}: sample names occur more than once: {'; '.join(duplicates)}")
  return dict(sorted(found.items()))


def _load_indexed(item: tuple[int, str], **kwargs) -> tuple[int, np.ndarray | None, str | None]:
  """Pool worker: (index, sample or None, error message or None)."""
  index, path = item
  try:
    return index, load_sample(path, **kwargs), None
  except io.DataError as e:
    return index, None, str(e)


def _map(function, items: list, num_workers: int) -> Iterable:
  if num_workers <= 1 or len(items) <= 1:
    yield from map(function, items)
    return
  # 'spawn', because the caller may have started threads (JAX) that fork would copy badly.
  with multiprocessing.get_context("spawn").Pool(min(num_workers, len(items))) as pool:
    yield from pool.imap(function, items, chunksize=8)


class _SplitWriter:
  """Streams rows into `{split}/{part}_data.npy` memmaps on temporary names (io.atomic_path)."""

  def __init__(self, stack: contextlib.ExitStack, path: str, shape: tuple[int, ...]):
    self.path = path
    self.tmp = stack.enter_context(io.atomic_path(path))
    self.shape = shape
    if shape[0]:
      self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)
    else:
      self.array = None
      np.save(self.tmp, np.zeros(shape, np.float32))

  def finish(self, keep: np.ndarray) -> int:
    """Flushes; keeps only rows where `keep` (compacting into a new temporary if needed)."""
    if self.array is None:
      return 0
    self.array.flush()
    if keep.all():
      del self.array
      return len(keep)
    directory = os.path.dirname(self.tmp)
    fd, compact = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=directory)
    os.close(fd)
    try:
      rows = np.flatnonzero(keep)
      if len(rows):
        out = np.lib.format.open_memmap(compact, mode="w+", dtype=np.float32,
                                        shape=(len(rows),) + self.shape[1:])
        for start in range(0, len(rows), 256):
          out[start:start + 256] = self.array[rows[start:start + 256]]
        out.flush()
        del out
      else:
        np.save(compact, np.zeros((0,) + self.shape[1:], np.float32))
      del self.array
      os.replace(compact, self.tmp)
    finally:
      if os.path.exists(compact):
        os.remove(compact)
    return len(rows)


def prepare(raw_dir: str, out_dir: str, *, variant: str = "ntu60", skip_bad: bool = False,
            body_selection: str = "energy", max_frames: int = 300,
            num_workers: int | None = None, drop_empty_frames: bool | None = None) -> dict:
  """Parses every NTU `.skeleton` file under `raw_dir` into the split arrays under `out_dir`.

  Samples of the other variant (NTU-120 files when `variant='ntu60'`) and those in the standard
  missing-skeleton list are skipped (each missing one is logged). Each split directory
  (`xsub`, `xview` for NTU-60; `xsub`, `xset` for NTU-120) receives `{train,val}_data.npy`
  float32 (N, 3, max_frames, 25, 2) and `{train,val}_label.pkl` = (sample_names, labels),
  sorted by sample name. Arrays are streamed into memory maps on temporary names and renamed
  only at the end, so a failure leaves nothing half-written.

  Bad files (parse errors, no body) are all collected: if there are any and not `skip_bad`,
  one DataError lists them all and nothing is written; with `skip_bad` each is logged and the
  others are written.

  Returns:
    A summary: layout, variant, splits {split: {'train': n, 'val': n}}, bad [(file, message)],
    skipped_missing [names], skipped_other_variant (count), body_selection, drop_empty_frames,
    max_frames.
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  if body_selection not in BODY_SELECTIONS:
    raise ValueError(f"body_selection must be one of {BODY_SELECTIONS}, got {body_selection!r}")
  if drop_empty_frames is None:
    drop_empty_frames = body_selection == "energy"
  files = find_skeleton_files(raw_dir)
  if not files:
    raise io.DataError(f"{raw_dir}: no .skeleton files found")
  missing = missing_samples(variant)

  bad: list[tuple[str, str]] = []
  skipped_missing: list[str] = []
  other_variant = 0
  names, paths, infos = [], [], []
  for name, path in files.items():
    try:
      info = parse_sample_name(path)
    except io.DataError as e:
      bad.append((path, str(e)))
      continue
    if not in_variant(info, variant):
      other_variant += 1
      continue
    if name in missing:
      logging.info("skipping %s: listed among the %s samples with missing skeletons", name,
                   variant)
      skipped_missing.append(name)
      continue
    names.append(name)
    paths.append(path)
    infos.append(info)
  if other_variant:
    logging.info("skipping %d files that are not part of %s", other_variant, variant)
  if not names and not bad:
    raise io.DataError(f"{raw_dir}: no {variant} samples among the {len(files)} .skeleton files")

  splits = SPLITS[variant]
  parts = ("train", "val")
  # rows[split][part]: indices (into `names`) of the samples that go there, in name order.
  rows = {s: {p: [i for i, info in enumerate(infos) if split_part(info, s, variant) == p]
              for p in parts} for s in splits}
  dirs = [out_dir] + [os.path.join(out_dir, s) for s in splits]
  created = [d for d in dirs if not os.path.isdir(d)]
  ok = np.ones(len(names), dtype=bool)
  counts = {s: {} for s in splits}
  try:
    with contextlib.ExitStack() as stack:
      writers = {s: {p: _SplitWriter(stack, os.path.join(out_dir, s, f"{p}_data.npy"),
                                     (len(rows[s][p]), 3, max_frames, NUM_JOINTS, MAX_BODIES))
                     for p in parts} for s in splits}
      # where[i]: the (writer, row) pairs that sample i is written to.
      where = [[] for _ in names]
      for s in splits:
        for p in parts:
          for row, i in enumerate(rows[s][p]):
            where[i].append((writers[s][p], row))

      worker = functools.partial(_load_indexed, body_selection=body_selection,
                                 drop_empty_frames=drop_empty_frames, max_frames=max_frames)
      if num_workers is None:
        num_workers = os.cpu_count() or 1
      results = _map(worker, list(enumerate(paths)), num_workers)
      for i, sample, error in io.progress(results, desc=f"parse {variant}", total=len(paths)):
        if error is not None:
          bad.append((paths[i], error))
          ok[i] = False
          continue
        for writer, row in where[i]:
          writer.array[row] = sample

      if bad and not ok.any():
        listing = "\n  ".join(message for _, message in bad)
        raise io.DataError(f"{raw_dir}: all {len(bad)} {variant} files are bad:\n  {listing}")
      io.report_bad_files(bad, "NTU skeleton", skip_bad)

      for s in splits:
        for p in parts:
          keep = ok[rows[s][p]]
          counts[s][p] = writers[s][p].finish(keep)
          kept = [i for i in rows[s][p] if ok[i]]
          label_path = stack.enter_context(
              io.atomic_path(os.path.join(out_dir, s, f"{p}_label.pkl")))
          with open(label_path, "wb") as f:
            pickle.dump(([names[i] for i in kept], [infos[i].label for i in kept]), f)
  except BaseException:
    for directory in reversed(created):
      with contextlib.suppress(OSError):
        os.rmdir(directory)
    raise

  for s in splits:
    logging.info("%s/%s: train %d, val %d", variant, s, counts[s]["train"], counts[s]["val"])
  return {
      "layout": "ntu",
      "variant": variant,
      "splits": counts,
      "bad": bad,
      "skipped_missing": skipped_missing,
      "skipped_other_variant": other_variant,
      "body_selection": body_selection,
      "drop_empty_frames": drop_empty_frames,
      "max_frames": max_frames,
  }

