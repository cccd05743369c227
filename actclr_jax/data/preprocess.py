"""The paper's 50-frame preprocessing, cached on disk next to the raw-length arrays.

Per sample (NOTES.md): subtract the centre joint per frame and body, linearly resize the
valid frames (body 0 non-zero) to a fixed length, and rotate about the vertical (y) axis so
that the shoulder vector (right minus left shoulder) lies along +x.
"""

from __future__ import annotations

import os

from absl import logging
import numpy as np

from actclr_jax import graph
from actclr_jax.data import io


def cache_suffix(frames: int = 50, center: bool = True, resize: bool = True,
                 view_normalize: bool = True) -> str:
  """File-name suffix of a preprocessed cache, e.g. '_t50' for the defaults."""
  suffix = f"_t{frames}"
  if not center:
    suffix += "_nocenter"
  if not resize:
    suffix += "_noresize"
  if not view_normalize:
    suffix += "_noview"
  return suffix


def valid_frames(sequence: np.ndarray) -> np.ndarray:
  """(T,) bool: frames where body 0 of a (C, T, V, M) sequence is non-zero."""
  return np.abs(sequence[..., 0]).sum(axis=(0, 2)) > 0


def _resize_time(array: np.ndarray, frames: int, axis: int) -> np.ndarray:
  """Linear interpolation of `array` along `axis` to `frames` samples (end points kept)."""
  length = array.shape[axis]
  if length == frames:
    return array
  if length == 1:
    return np.repeat(array, frames, axis=axis)
  position = np.linspace(0, length - 1, frames)
  low = np.floor(position).astype(int)
  high = np.minimum(low + 1, length - 1)
  weight = (position - low).reshape([-1 if a == axis else 1 for a in range(array.ndim)])
  return (np.take(array, low, axis=axis) * (1 - weight)
          + np.take(array, high, axis=axis) * weight)


def rotate_to_shoulders(sequence: np.ndarray, layout: graph.Layout) -> np.ndarray:
  """Rotates (C, T, V, M) about y so body 0's mean shoulder vector lies along +x."""
  left, right = layout.shoulders
  present = valid_frames(sequence)
  if not present.any():
    return sequence
  shoulder = (sequence[:, present, right, 0] - sequence[:, present, left, 0]).mean(axis=1)
  angle = np.arctan2(shoulder[2], shoulder[0])
  cos, sin = np.cos(angle), np.sin(angle)
  # Rotation by +angle about y maps (cos a, ., sin a) onto (1, ., 0) in the x-z plane.
  rotation = np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]], dtype=np.float64)
  return np.einsum("dc,ctvm->dtvm", rotation, sequence)


def preprocess_sequence(sequence: np.ndarray, layout: graph.Layout, *, frames: int = 50,
                        center: bool = True, resize: bool = True, view_normalize: bool = True,
                        mask: np.ndarray | None = None):
  """Preprocesses one (C, T, V, M) sequence to (C, frames, V, M).

  `mask` (T, V), if given, is resampled in time like the sequence and returned as a
  (frames, V) uint8 array next to it. Without resize, valid frames are cropped or
  zero-padded to `frames`.
  """
  x = sequence.astype(np.float64)
  present = np.abs(x).sum(axis=(0, 2), keepdims=True) > 0  # (1, T, 1, M)
  if center:
    x = (x - x[:, :, layout.center:layout.center + 1, :]) * present
  keep = valid_frames(sequence)
  if not keep.any():
    keep = np.ones_like(keep)
  x = x[:, keep]
  m = None if mask is None else mask[keep].astype(np.float64)
  if resize:
    x = _resize_time(x, frames, axis=1)
    if m is not None:
      m = _resize_time(m, frames, axis=0)
  else:
    x = np.moveaxis(io.pad_or_crop_frames(np.moveaxis(x, 1, 0), frames), 0, 1)
    if m is not None:
      m = io.pad_or_crop_frames(m, frames)
  if view_normalize:
    x = rotate_to_shoulders(x, layout)
  out = x.astype(np.float32)
  if mask is None:
    return out
  return out, (m >= 0.5).astype(np.uint8)


def write_cache(split_dir: str, part: str, layout: graph.Layout, *, frames: int = 50,
                center: bool = True, resize: bool = True, view_normalize: bool = True) -> str:
  """Preprocesses `{split_dir}/{part}_data.npy` into `{part}_data{suffix}.npy` and returns its path.

  A ground-truth `{part}_actionlet.npy` (N, T, V), if present, is resampled alongside.
  """
  source = os.path.join(split_dir, f"{part}_data.npy")
  data = load_array(source, layout)
  suffix = cache_suffix(frames, center, resize, view_normalize)
  mask_source = os.path.join(split_dir, f"{part}_actionlet.npy")
  masks = np.load(mask_source, mmap_mode="r") if os.path.exists(mask_source) else None
  if masks is not None and masks.shape[:3] != (data.shape[0], data.shape[2], data.shape[3]):
    raise io.DataError(f"{mask_source}: actionlet shape {masks.shape} does not match data "
                       f"{data.shape} (expected (N, T, V))")
  out = np.zeros(data.shape[:2] + (frames,) + data.shape[3:], dtype=np.float32)
  out_masks = None if masks is None else np.zeros((len(data), frames, data.shape[3]), np.uint8)
  for i in io.progress(range(len(data)), desc=f"preprocess {os.path.basename(split_dir)}/{part}"):
    result = preprocess_sequence(np.asarray(data[i]), layout, frames=frames, center=center,
                                 resize=resize, view_normalize=view_normalize,
                                 mask=None if masks is None else np.asarray(masks[i]))
    if masks is None:
      out[i] = result
    else:
      out[i], out_masks[i] = result
  target = os.path.join(split_dir, f"{part}_data{suffix}.npy")
  io.save_npy(target, out)
  if out_masks is not None:
    io.save_npy(os.path.join(split_dir, f"{part}_actionlet{suffix}.npy"), out_masks)
  logging.info("wrote %s %s", target, out.shape)
  return target


def load_array(path: str, layout: graph.Layout | None = None) -> np.ndarray:
  """Memory-maps a (N, C, T, V, M) float array, checking its rank and joint count."""
  if not os.path.exists(path):
    raise io.DataError(f"{path}: no such file")
  try:
    data = np.load(path, mmap_mode="r")
  except ValueError as e:
    raise io.DataError(f"{path}: not a readable .npy array: {e}") from e
  if data.ndim != 5 or data.shape[1] != 3:
    raise io.DataError(f"{path}: expected an array of shape (N, 3, T, V, M), got {data.shape}")
  if layout is not None and data.shape[3] != layout.num_joints:
    raise io.DataError(f"{path}: {data.shape[3]} joints, but layout {layout.name!r} has "
                       f"{layout.num_joints} (config key data.layout)")
  return data
