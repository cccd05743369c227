"""Shared I/O for data preparation: errors, atomic writes, the on-disk split layout, progress."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import tempfile
from typing import Iterable, Iterator, Sequence

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


def report_bad_files(bad: Sequence[tuple[str, str]], what: str, skip_bad: bool) -> None:
  """Ends a folder run's bad-file handling: raises one DataError listing every (file, message)
  unless `skip_bad`, in which case each is logged as skipped. `what` names the data set."""
  if not bad:
    return
  listing = "\n".join(f"  {message if message.startswith(str(path)) else f'{path}: {message}'}"
                       for path, message in bad)
  if not skip_bad:
    raise DataError(f"{len(bad)} bad {what} file(s); nothing was written (pass --skip_bad to "
                    f"skip them):\n{listing}")
  for path, message in bad:
    logging.warning("skipping bad %s file %s: %s", what, path, message)


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


def write_split(out_dir: str, part: str, data: np.ndarray, names: Sequence[str],
                labels: Sequence[int], extras: dict[str, np.ndarray] | None = None) -> None:
  """Writes `{out_dir}/{part}_data.npy` (N, C, T, V, M) and `{part}_label.pkl`.

  `extras` maps a suffix to an array with N rows, written as `{part}_{suffix}.npy`.
  """
  if data.ndim != 5:
    raise DataError(f"{out_dir}/{part}_data.npy: expected (N, C, T, V, M), got shape {data.shape}")
  if not len(names) == len(labels) == len(data):
    raise DataError(f"{out_dir}/{part}: {len(data)} samples, {len(names)} names, "
                    f"{len(labels)} labels")
  save_npy(os.path.join(out_dir, f"{part}_data.npy"), data.astype(np.float32, copy=False))
  save_pickle(os.path.join(out_dir, f"{part}_label.pkl"),
              (list(names), [int(l) for l in labels]))
  for suffix, array in (extras or {}).items():
    if len(array) != len(data):
      raise DataError(f"{out_dir}/{part}_{suffix}.npy: {len(array)} rows for {len(data)} samples")
    save_npy(os.path.join(out_dir, f"{part}_{suffix}.npy"), array)


def write_samples(split_dir: str, samples: dict, sample_shape: tuple[int, ...]) -> dict[str, int]:
  """Writes {part: ([data (C, T, V, M)], [name], [label])} with write_split; returns the counts.

  An empty part is written as a (0, *sample_shape) array.
  """
  counts = {}
  for part, (data, names, labels) in samples.items():
    array = np.stack(data) if data else np.zeros((0,) + tuple(sample_shape), np.float32)
    write_split(split_dir, part, array, names, labels)
    counts[part] = len(names)
  return counts


def progress(items: Iterable, desc: str, total: int | None = None):
  """A tqdm progress bar on stderr."""
  return tqdm.tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5)


def check_finite(array: np.ndarray, where: str) -> None:
  """Raises DataError naming `where` and the first frame with a NaN or inf value.

  `array` is (T, ...) with time first.
  """
  bad = ~np.isfinite(array)
  if bad.any():
    frame = int(np.argwhere(bad)[0][0])
    raise DataError(f"{where}: NaN or inf coordinate at frame {frame}")


def pad_or_crop_frames(sequence: np.ndarray, max_frames: int) -> np.ndarray:
  """(T, ...) -> (max_frames, ...): zero-pad at the end, or centre-crop."""
  t = sequence.shape[0]
  if t >= max_frames:
    start = (t - max_frames) // 2
    return sequence[start:start + max_frames]
  pad = [(0, max_frames - t)] + [(0, 0)] * (sequence.ndim - 1)
  return np.pad(sequence, pad)
