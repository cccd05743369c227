"""Shared I/O of the runtime and of preparation: the error type, atomic writes, the label
file reader, progress bars and frame padding. The array writer is `prepare/writer.py`."""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
from typing import Iterable, Iterator

import numpy as np
import tqdm


class DataError(ValueError):
  """Bad input data. The message names the file (and line or frame where it applies)."""


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`; renames it onto `path` only on success.

  A failure leaves no half-written file behind.
  """
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
  os.close(fd)
  try:
    yield tmp
    # mkstemp creates 0600 files; give the result the usual umask-based permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save_npy(path: str, array: np.ndarray) -> None:
  """Writes `array` to `path` (.npy) atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, array)


def save_pickle(path: str, obj) -> None:
  """Pickles `obj` to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      pickle.dump(obj, f)


def load_labels(path: str) -> tuple[list[str], np.ndarray]:
  """Reads a `{part}_label.pkl` = (sample_names, labels) file."""
  try:
    with open(path, "rb") as f:
      names, labels = pickle.load(f)
  except (OSError, pickle.UnpicklingError, ValueError, TypeError, EOFError) as e:
    raise DataError(f"{path}: not a (sample_names, labels) pickle: {e}") from e
  labels = np.asarray(labels, dtype=np.int64)
  if len(names) != len(labels):
    raise DataError(f"{path}: {len(names)} sample names but {len(labels)} labels")
  return list(names), labels


def progress(items: Iterable, desc: str, total: int | None = None):
  """A tqdm progress bar on stderr."""
  return tqdm.tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5)


def pad_or_crop_frames(sequence: np.ndarray, max_frames: int) -> np.ndarray:
  """(T, ...) -> (max_frames, ...): zero-pad at the end, or centre-crop."""
  t = sequence.shape[0]
  if t >= max_frames:
    start = (t - max_frames) // 2
    return sequence[start:start + max_frames]
  pad = [(0, max_frames - t)] + [(0, 0)] * (sequence.ndim - 1)
  return np.pad(sequence, pad)
