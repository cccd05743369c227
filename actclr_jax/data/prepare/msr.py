"""MSR Action3D: parser and preparation into the (N, C, T, V, M) split layout.

Raw format (`aAA_sSS_eEE_skeleton3D.txt`, action AA 1-20, subject SS 1-10,
episode EE 1-3): no header, 20 lines per frame, each `x y z c` where c is a
confidence. We keep (x, y, z) in file order: y is vertical and z is depth, the
same convention as NTU camera space.

Units: metres, Kinect v1 camera space. Over the 567 real files the tracked
joints span x -1.05..0.87, y -1.88..1.15 and depth z 1.39..3.88, so the values
are used as they are, without rescaling.

Sequences are 13..936 frames long (median 39); the 557 standard ones are
13..76 (the 936-frame `a13_s09_e03`, mostly untracked, is one of the ten left
out). Nineteen files contain frames where every joint is 0 (tracking lost, mostly
in "bend" and "pick up & throw"); such frames are kept as they are, as the NTU
parser keeps zero-filled frames.

Protocol: only the 557 sequences named in `files_used_in_cvpr12_paper.txt`
(which must sit in the raw folder) are prepared; the other 10 are excluded and
listed in the summary. `a13_s09_e02` is all zeros and is one of the excluded
ten. An all-zero sequence inside the standard list is an error (it carries no
skeleton at all); outside the list it is simply not read.

Cross-subject split: subjects 1, 3, 5, 7, 9 train, 2, 4, 6, 8, 10 val, written to
`{out_dir}/xsub/`; label = action - 1. With the real data this gives 284
training and 273 validation sequences.
"""

from __future__ import annotations

import os
import re

import numpy as np

from actclr_jax.data import io, registry
from actclr_jax.data.prepare import common

NUM_JOINTS = 20
NUM_ACTIONS = registry.get("msr").num_classes
NUM_SUBJECTS = 10
LAYOUT = registry.get("msr").layout
FILE_SUFFIX = "_skeleton3D.txt"
STANDARD_LIST = "files_used_in_cvpr12_paper.txt"
TRAIN_SUBJECTS = (1, 3, 5, 7, 9)

_NAME_RE = re.compile(r"a(\d\d)_s(\d\d)_e(\d\d)")


def parse_name(name: str) -> tuple[int, int, int]:
  """`aAA_sSS_eEE` (optionally a path with `_skeleton3D.txt`) -> (action, subject, episode)."""
  base = os.path.basename(name)
  if base.endswith(FILE_SUFFIX):
    base = base[:-len(FILE_SUFFIX)]
  match = _NAME_RE.fullmatch(base)
  if match is None:
    raise io.DataError(f"{name}: not an MSR Action3D name aAA_sSS_eEE")
  action, subject, episode = (int(g) for g in match.groups())
  if not 1 <= action <= NUM_ACTIONS:
    raise io.DataError(f"{name}: action {action} outside 1..{NUM_ACTIONS}")
  if not 1 <= subject <= NUM_SUBJECTS:
    raise io.DataError(f"{name}: subject {subject} outside 1..{NUM_SUBJECTS}")
  return action, subject, episode


def read_sequence(path: str) -> np.ndarray:
  """Reads one `*_skeleton3D.txt` file -> (T, 20, 3) float32 (x, y vertical, z depth), metres."""
  table = common.read_table(path, 4)
  n = len(table)
  if n == 0:
    raise io.DataError(f"{path}: empty file (no frames)")
  if n % NUM_JOINTS:
    frame = n // NUM_JOINTS
    raise io.DataError(
        f"{path}: line {n}: {n} lines is not a multiple of {NUM_JOINTS}; frame {frame} "
        f"(0-based) is incomplete, starting at line {frame * NUM_JOINTS + 1}")
  return table[:, :3].reshape(n // NUM_JOINTS, NUM_JOINTS, 3).astype(np.float32)


def read_standard_list(raw_dir: str) -> list[str]:
  """Names of the standard-protocol sequences, from `{raw_dir}/files_used_in_cvpr12_paper.txt`."""
  path = os.path.join(raw_dir, STANDARD_LIST)
  try:
    with open(path, "r", encoding="ascii") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise io.DataError(f"{path}: cannot read the standard-protocol list: {e}") from e
  names, seen = [], set()
  for i, line in enumerate(lines):
    name = line.strip()
    if not name:
      continue
    if _NAME_RE.fullmatch(name) is None:
      raise io.DataError(f"{path}: line {i + 1}: {name!r} is not an aAA_sSS_eEE name")
    if name in seen:
      raise io.DataError(f"{path}: line {i + 1}: {name} is listed twice")
    seen.add(name)
    names.append(name)
  if not names:
    raise io.DataError(f"{path}: the standard-protocol list is empty")
  return names


def list_sequences(raw_dir: str) -> list[str]:
  """Sorted names `aAA_sSS_eEE` of the `*_skeleton3D.txt` files in `raw_dir`."""
  if not os.path.isdir(raw_dir):
    raise io.DataError(f"{raw_dir}: MSR Action3D folder not found")
  return sorted(f[:-len(FILE_SUFFIX)] for f in os.listdir(raw_dir) if f.endswith(FILE_SUFFIX))


def prepare(raw_dir: str, out_dir: str, *, skip_bad: bool = False, max_frames: int = 300) -> dict:
  """Parses the standard-protocol sequences and writes `{out_dir}/xsub/{train,val}_*`.

  Data is (N, 3, max_frames, 20, 1) float32, zero-padded at the end or centre-cropped.
  Returns {'layout', 'splits': {'xsub': {'train': n, 'val': n}}, 'bad': [(file, message)],
  'excluded': names outside the standard list, 'num_frames': (min, max) over the kept sequences}.
  """
  present = list_sequences(raw_dir)
  standard = read_standard_list(raw_dir)
  present_set = set(present)
  excluded = sorted(present_set - set(standard))
  bad: list[tuple[str, str]] = []
  parts = common.SingleBodyParts(max_frames, NUM_JOINTS)
  for name in io.progress(standard, desc="msr_action3d"):
    path = os.path.join(raw_dir, name + FILE_SUFFIX)
    try:
      if name not in present_set:
        raise io.DataError(f"{path}: listed in {STANDARD_LIST} but the file is missing")
      action, subject, _ = parse_name(name)
      sequence = read_sequence(path)
      if not sequence.any():
        raise io.DataError(f"{path}: every frame is all zeros (no skeleton)")
    except io.DataError as e:
      bad.append((path, str(e)))
      continue
    parts.add("train" if subject in TRAIN_SUBJECTS else "val", sequence, name, action - 1)

  common.report_bad_files(bad, "MSR Action3D", skip_bad)

  return {
      "layout": LAYOUT,
      "splits": {"xsub": parts.write(os.path.join(out_dir, "xsub"))},
      "bad": bad,
      "excluded": excluded,
      "num_frames": parts.num_frames,
  }
