"""The one array writer of data preparation: rows streamed to a .npy through a temporary name.

Every preparer writes its arrays with `ArrayWriter` (sample by sample, or a block of rows at a
time) and its split files with `write_split`. Nothing appears under a final name until the
whole file is written; a failure leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import pickle
import sys
from typing import Iterable, Sequence

import numpy as np

from actclr_jax.data import io


def _header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
  """The .npy (version 1.0) header `np.save` writes for an array of `shape` and `dtype`."""
  buffer = _io.BytesIO()
  np.lib.format.write_array_header_1_0(buffer, {
      "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
  return buffer.getvalue()


class ArrayWriter:
  """Streams rows of one shape into `path` (.npy), e.g. (C, T, V, M) samples -> (N, C, T, V, M).

  Use as a context manager. Rows go to a temporary file next to `path`; on a clean exit the
  header is set to the number of rows appended and the file is renamed onto `path`. On an
  exception the temporary file is removed and `path` is left as it was.

  Args:
    path: the final .npy file.
    row_shape: the shape of one row, e.g. (3, T, V, M).
    capacity: the most rows that will be appended (fewer is allowed: rows of bad samples are
      simply never appended).
    dtype: the stored dtype; rows are cast to it.
  """

  def __init__(self, path: str, row_shape: Sequence[int], capacity: int,
               dtype: np.dtype | type = np.float32):
    self.path = path
    self.row_shape = tuple(int(d) for d in row_shape)
    self.capacity = int(capacity)
    self.dtype = np.dtype(dtype)
    self.count = 0
    self._stack: contextlib.ExitStack | None = None
    self._file = None
    self._tmp = None
    self._header_size = 0

  def __enter__(self) -> "ArrayWriter":
    with contextlib.ExitStack() as stack:
      self._tmp = stack.enter_context(io.atomic_path(self.path))
      self._file = stack.enter_context(open(self._tmp, "wb"))
      # The header for `capacity` rows; it is rewritten in `_finish` if fewer rows came.
      header = _header((self.capacity,) + self.row_shape, self.dtype)
      self._file.write(header)
      self._header_size = len(header)
      self._stack = stack.pop_all()
    return self

  def append(self, row: np.ndarray) -> None:
    """Appends one row of shape `row_shape`."""
    row = np.asarray(row)
    if row.shape != self.row_shape:
      raise io.DataError(f"{self.path}: row {self.count} has shape {row.shape}, expected "
                         f"{self.row_shape}")
    self._write(row[None])

  def extend(self, rows: np.ndarray) -> None:
    """Appends a block of rows, (n, *row_shape)."""
    rows = np.asarray(rows)
    if rows.shape[1:] != self.row_shape:
      raise io.DataError(f"{self.path}: rows of shape {rows.shape[1:]} at row {self.count}, "
                         f"expected {self.row_shape}")
    self._write(rows)

  def _write(self, rows: np.ndarray) -> None:
    if self.count + len(rows) > self.capacity:
      raise io.DataError(f"{self.path}: more than the {self.capacity} rows it was opened for")
    self._file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
    self.count += len(rows)

  def __exit__(self, exc_type, exc, traceback) -> bool:
    stack, self._stack = self._stack, None
    if exc_type is None:
      try:
        self._finish()
      except BaseException:
        # The exception must reach atomic_path, which then removes the temporary file.
        stack.__exit__(*sys.exc_info())
        raise
    return stack.__exit__(exc_type, exc, traceback)

  def _finish(self) -> None:
    """Sets the header's row count to `count`, in place."""
    if self.count != self.capacity:
      header = _header((self.count,) + self.row_shape, self.dtype)
      # numpy pads the header so that the leading dimension can grow to 21 digits in place.
      if len(header) != self._header_size:
        raise io.DataError(f"{self.path}: the .npy header for {self.count} rows differs in "
                           f"length from the one for {self.capacity}")
      self._file.seek(0)
      self._file.write(header)
    self._file.close()


def write_split(split_dir: str, part: str, samples: Iterable[np.ndarray], names: Sequence[str],
                labels: Sequence[int], sample_shape: Sequence[int],
                extras: dict[str, tuple[np.ndarray, np.dtype | type]] | None = None) -> int:
  """Writes `{split_dir}/{part}_data.npy` (N, C, T, V, M) float32 and `{part}_label.pkl`.

  `samples` yields N (C, T, V, M) arrays (`sample_shape`), streamed to disk; the label file
  is (names, labels) with N entries each. `extras` maps a suffix to (array with N rows,
  dtype), written as `{part}_{suffix}.npy`. Returns N.
  """
  if len(sample_shape) != 4:
    raise io.DataError(f"{split_dir}/{part}_data.npy: expected (N, C, T, V, M) samples, got "
                       f"sample shape {tuple(sample_shape)}")
  if len(names) != len(labels):
    raise io.DataError(f"{split_dir}/{part}: {len(names)} names, {len(labels)} labels")
  n = len(names)
  # One ExitStack for every file: all of them are renamed at the end, or none.
  with contextlib.ExitStack() as stack:
    data = stack.enter_context(
        ArrayWriter(os.path.join(split_dir, f"{part}_data.npy"), sample_shape, n))
    for sample in samples:
      data.append(sample)
    if data.count != n:
      raise io.DataError(f"{split_dir}/{part}_data.npy: {data.count} samples for {n} names and "
                         f"labels")
    for suffix, (array, dtype) in (extras or {}).items():
      if len(array) != n:
        raise io.DataError(f"{split_dir}/{part}_{suffix}.npy: {len(array)} rows for {n} samples")
      stack.enter_context(ArrayWriter(os.path.join(split_dir, f"{part}_{suffix}.npy"),
                                      array.shape[1:], n, dtype)).extend(array)
    tmp = stack.enter_context(io.atomic_path(os.path.join(split_dir, f"{part}_label.pkl")))
    with open(tmp, "wb") as f:
      pickle.dump((list(names), [int(l) for l in labels]), f)
  return n
