"""NW-UCLA (Northwestern-UCLA Multiview Action3D): parser and preparation.

Raw format: the widespread preprocessed layout, one JSON per sequence named
`aAA_sSS_eEE_vVV.json` (action, subject, episode, view), anywhere under
`raw_dir` (e.g. `raw_dir/all_sqe/`), holding
`{"file_name": str, "skeletons": [T][20][3], "label": int}`: one body, Kinect v1
joint order (layout 'kinect_v1'), metres.

The ten action codes a01-a06, a08, a09, a11, a12 map to the JSON labels 1-10;
we store label - 1 and require the JSON's label to agree with the filename's
action code. `file_name` is informational and not checked.

Split: views 1 and 2 train, view 3 val, written to `{out_dir}/xview/`.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from actclr_jax.data import io, registry
from actclr_jax.data.prepare import common

NUM_JOINTS = 20
LAYOUT = registry.get("nwucla").layout
ACTION_CODES = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
TRAIN_VIEWS = (1, 2)
VIEWS = (1, 2, 3)

_NAME_RE = re.compile(r"a(\d\d)_s(\d\d)_e(\d\d)_v(\d\d)")


def parse_name(name: str) -> tuple[int, int, int, int]:
  """`aAA_sSS_eEE_vVV` (optionally a path ending in .json) -> (action, subject, episode, view)."""
  base = os.path.basename(name)
  if base.endswith(".json"):
    base = base[:-len(".json")]
  match = _NAME_RE.fullmatch(base)
  if match is None:
    raise io.DataError(f"{name}: not an NW-UCLA name aAA_sSS_eEE_vVV")
  action, subject, episode, view = (int(g) for g in match.groups())
  if action not in ACTION_CODES:
    raise io.DataError(f"{name}: action code a{action:02d} is not one of the 10 NW-UCLA actions")
  if view not in VIEWS:
    raise io.DataError(f"{name}: view {view} outside 1..3")
  return action, subject, episode, view


def action_label(action: int) -> int:
  """Filename action code -> the dataset's 1-based label (a01..a06, a08, a09, a11, a12 -> 1..10)."""
  return ACTION_CODES.index(action) + 1


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _locate_bad_value(path: str, skeletons) -> str:
  """Describes the first structural problem of `skeletons`, naming the frame."""
  for t, frame in enumerate(skeletons):
    if not isinstance(frame, list) or len(frame) != NUM_JOINTS:
      got = len(frame) if isinstance(frame, list) else type(frame).__name__
      return f"{path}: frame {t}: expected {NUM_JOINTS} joints, got {got}"
    for v, joint in enumerate(frame):
      if not isinstance(joint, list) or len(joint) != 3:
        got = len(joint) if isinstance(joint, list) else type(joint).__name__
        return f"{path}: frame {t}, joint {v}: expected 3 coordinates, got {got}"
      for x in joint:
        if not _is_number(x):
          return f"{path}: frame {t}, joint {v}: non-numeric coordinate {x!r}"
        if not math.isfinite(x):
          return f"{path}: frame {t}, joint {v}: NaN or inf coordinate"
  return f"{path}: malformed skeletons"


def read_sample(path: str) -> tuple[np.ndarray, int]:
  """Reads one NW-UCLA JSON -> (skeletons (T, 20, 3) float32, 0-based label)."""
  action = parse_name(path)[0]
  try:
    with open(path, "r", encoding="utf-8") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise io.DataError(f"{path}: cannot read: {e}") from e
  if not text.strip():
    raise io.DataError(f"{path}: empty file")
  try:
    content = json.loads(text)
  except json.JSONDecodeError as e:
    raise io.DataError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from e
  if not isinstance(content, dict):
    raise io.DataError(f"{path}: expected a JSON object, got {type(content).__name__}")
  if "skeletons" not in content:
    raise io.DataError(f"{path}: no 'skeletons' entry")
  if "label" not in content:
    raise io.DataError(f"{path}: no 'label' entry")
  skeletons, label = content["skeletons"], content["label"]
  if not isinstance(label, int) or isinstance(label, bool):
    raise io.DataError(f"{path}: label {label!r} is not an integer")
  if label != action_label(action):
    raise io.DataError(f"{path}: JSON label {label} disagrees with action code a{action:02d} "
                       f"(label {action_label(action)})")
  if not isinstance(skeletons, list) or not skeletons:
    raise io.DataError(f"{path}: 'skeletons' must be a non-empty list of frames")
  try:
    array = np.array(skeletons)
  except ValueError:  # ragged nesting
    raise io.DataError(_locate_bad_value(path, skeletons)) from None
  # Strings, None and ragged nesting leave the float/int kinds; numpy would silently turn
  # booleans mixed with floats into 0/1, hence the explicit type scan.
  if (array.shape != (len(skeletons), NUM_JOINTS, 3) or array.dtype.kind not in "iuf" or
      not all(type(x) in (int, float) for frame in skeletons for joint in frame for x in joint)):
    raise io.DataError(_locate_bad_value(path, skeletons))
  array = array.astype(np.float32)
  common.check_finite(array, path)
  return array, label - 1


def list_files(raw_dir: str) -> list[str]:
  """Sorted paths of the .json files under `raw_dir` (recursively)."""
  if not os.path.isdir(raw_dir):
    raise io.DataError(f"{raw_dir}: NW-UCLA folder not found")
  paths = []
  for root, _, files in os.walk(raw_dir):
    paths.extend(os.path.join(root, f) for f in files if f.endswith(".json"))
  return sorted(paths, key=os.path.basename)


def prepare(raw_dir: str, out_dir: str, *, skip_bad: bool = False, max_frames: int = 300) -> dict:
  """Parses every `aAA_sSS_eEE_vVV.json` under `raw_dir` and writes `{out_dir}/xview/`.

  Data is (N, 3, max_frames, 20, 1) float32, zero-padded at the end or centre-cropped.
  Returns {'layout', 'splits': {'xview': {'train': n, 'val': n}}, 'bad': [(file, message)],
  'num_frames': (min, max)}.
  """
  paths = list_files(raw_dir)
  if not paths:
    raise io.DataError(f"{raw_dir}: no .json files found")
  bad: list[tuple[str, str]] = []
  parts = common.SingleBodyParts(max_frames, NUM_JOINTS)
  seen: dict[str, str] = {}
  for path in io.progress(paths, desc="nw-ucla"):
    name = os.path.basename(path)[:-len(".json")]
    try:
      if name in seen:
        raise io.DataError(f"{path}: duplicate sequence name (also {seen[name]})")
      seen[name] = path
      view = parse_name(path)[3]
      skeletons, label = read_sample(path)
    except io.DataError as e:
      bad.append((path, str(e)))
      continue
    parts.add("train" if view in TRAIN_VIEWS else "val", skeletons, name, label)

  common.report_bad_files(bad, "NW-UCLA", skip_bad)

  return {
      "layout": LAYOUT,
      "splits": {"xview": parts.write(os.path.join(out_dir, "xview"))},
      "bad": bad,
      "num_frames": parts.num_frames,
  }
