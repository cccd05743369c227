"""Per-class label subsampling for semi-supervised evaluation (1% / 10% of the labels)."""

from __future__ import annotations

import math

import numpy as np


def per_class_count(n: int, fraction: float) -> int:
  """max(1, round(fraction * n)) with halves rounded up; never more than n."""
  return min(n, max(1, math.floor(fraction * n + 0.5)))


def sample_per_class(labels, fraction: float, seed: int) -> np.ndarray:
  """Sorted int64 indices of a labelled subset: per_class_count(n_c, fraction) per class.

  For each class c present in `labels` (N,), in increasing class order, draws the
  indices uniformly without replacement from one numpy Generator seeded by `seed`.
  The result depends only on (labels, fraction, seed).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels: expected a 1-D array, got shape {labels.shape}")
  if labels.size == 0:
    raise ValueError("labels: empty")
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    chosen.append(rng.choice(members, size=per_class_count(len(members), fraction),
                             replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)
