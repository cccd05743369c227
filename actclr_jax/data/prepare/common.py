"""Helpers shared by the raw-format readers: whitespace tables, finite checks, bad-file reports."""

from __future__ import annotations

import io as _io
from typing import Sequence

from absl import logging
import numpy as np

from actclr_jax.data import io
from actclr_jax.data.prepare import writer


def read_table(path: str, num_cols: int) -> np.ndarray:
  """Reads a whitespace-separated table of `num_cols` floats a line -> (lines, num_cols) float64.

  Trailing blank lines are allowed. Any other malformed line (wrong value count, blank,
  non-numeric, NaN or inf) raises DataError naming the file and the 1-based line.
  """
  try:
    with open(path, "r", encoding="ascii") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise io.DataError(f"{path}: cannot read: {e}") from e
  text = text.rstrip()
  if not text:
    return np.zeros((0, num_cols))
  num_lines = text.count("\n") + 1
  try:  # numpy's C parser; the slow path below only runs to explain a failure
    table = np.loadtxt(_io.StringIO(text), dtype=np.float64, ndmin=2, comments=None)
  except ValueError:
    table = None
  if table is None or table.shape != (num_lines, num_cols):
    _raise_table_error(path, text.splitlines(), num_cols)
  bad = ~np.isfinite(table)
  if bad.any():
    line = int(np.argwhere(bad)[0][0]) + 1
    raise io.DataError(f"{path}: line {line}: NaN or inf value")
  return table


def _raise_table_error(path: str, lines: list[str], num_cols: int) -> None:
  for i, line in enumerate(lines):
    row = line.split()
    if len(row) != num_cols:
      raise io.DataError(f"{path}: line {i + 1}: expected {num_cols} values, got {len(row)}")
    try:
      [float(v) for v in row]
    except ValueError as e:
      raise io.DataError(f"{path}: line {i + 1}: non-numeric value: {e}") from e
  raise io.DataError(f"{path}: malformed table of {num_cols} values a line")


def report_bad_files(bad: Sequence[tuple[str, str]], what: str, skip_bad: bool) -> None:
  """Ends a folder run's bad-file handling: raises one DataError listing every (file, message)
  unless `skip_bad`, in which case each is logged as skipped. `what` names the data set."""
  if not bad:
    return
  listing = "\n".join(f"  {message if message.startswith(str(path)) else f'{path}: {message}'}"
                       for path, message in bad)
  if not skip_bad:
    raise io.DataError(f"{len(bad)} bad {what} file(s); nothing was written (pass --skip_bad "
                       f"to skip them):\n{listing}")
  for path, message in bad:
    logging.warning("skipping bad %s file %s: %s", what, path, message)


def check_finite(array: np.ndarray, where: str) -> None:
  """Raises DataError naming `where` and the first frame with a NaN or inf value.

  `array` is (T, ...) with time first.
  """
  bad = ~np.isfinite(array)
  if bad.any():
    frame = int(np.argwhere(bad)[0][0])
    raise io.DataError(f"{where}: NaN or inf coordinate at frame {frame}")


class SingleBodyParts:
  """Collects single-body sequences (T, V, 3) into the train and val parts of one split, padded
  or cropped to max_frames, and writes them as (N, 3, max_frames, V, 1) arrays (MSR, NW-UCLA)."""

  def __init__(self, max_frames: int, num_joints: int):
    self.max_frames, self.num_joints = max_frames, num_joints
    self.samples = {"train": ([], [], []), "val": ([], [], [])}
    self.lengths: list[int] = []

  def add(self, part: str, sequence: np.ndarray, name: str, label: int) -> None:
    self.lengths.append(len(sequence))
    # (T, V, C) -> (C, T, V, M=1)
    data = io.pad_or_crop_frames(sequence, self.max_frames).transpose(2, 0, 1)[..., None]
    for store, value in zip(self.samples[part], (data, name, label)):
      store.append(value)

  def write(self, split_dir: str) -> dict[str, int]:
    """Writes both parts under split_dir; returns {'train': n, 'val': n}."""
    return {part: writer.write_split(split_dir, part, data, names, labels,
                                     (3, self.max_frames, self.num_joints, 1))
            for part, (data, names, labels) in self.samples.items()}

  @property
  def num_frames(self) -> tuple[int, int]:
    """(min, max) length of the added sequences, before padding."""
    return (min(self.lengths), max(self.lengths)) if self.lengths else (0, 0)
