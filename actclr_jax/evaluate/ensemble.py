"""The 3-stream ensemble: a weighted sum of raw logits (0.6 joint + 0.6 bone + 0.4 motion)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from actclr_jax.evaluate import metrics

DEFAULT_WEIGHTS = {"joint": 0.6, "bone": 0.6, "motion": 0.4}


def ensemble_logits(logits_by_stream: Mapping[str, np.ndarray],
                    weights: Mapping[str, float] | None = None) -> np.ndarray:
  """(N, C) float32 sum over streams of weights[s] * logits_by_stream[s].

  Every weighted stream must be given and every given stream must have a weight (an
  unweighted stream is an error, not silently dropped); all logits share one (N, C) shape.
  """
  weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
  if not weights:
    raise ValueError("ensemble weights are empty")
  missing = sorted(set(weights) - set(logits_by_stream))
  if missing:
    raise ValueError(f"ensemble: no logits for stream(s) {missing}; "
                     f"given {sorted(logits_by_stream)}")
  unweighted = sorted(set(logits_by_stream) - set(weights))
  if unweighted:
    raise ValueError(f"ensemble: no weight for stream(s) {unweighted}; weights {weights}")
  arrays = {s: np.asarray(logits_by_stream[s], dtype=np.float32) for s in weights}
  shapes = {s: a.shape for s, a in arrays.items()}
  shape = next(iter(shapes.values()))
  if len(set(shapes.values())) != 1 or len(shape) != 2:
    raise ValueError(f"ensemble: every stream needs the same (N, C) logits, got {shapes}")
  total = np.zeros(shape, np.float32)
  for stream, array in arrays.items():
    total += np.float32(weights[stream]) * array
  return total


def ensemble_report(logits_by_stream: Mapping[str, np.ndarray], labels,
                    weights: Mapping[str, float] | None = None) -> dict[str, float]:
  """Top-1 (%) of each stream and of their ensemble: {stream: top1, ..., 'ensemble': top1}."""
  if "ensemble" in logits_by_stream:
    raise ValueError("a stream may not be called 'ensemble'")
  combined = ensemble_logits(logits_by_stream, weights)
  report = {s: metrics.topk_accuracy(l, labels, 1) for s, l in logits_by_stream.items()}
  report["ensemble"] = metrics.topk_accuracy(combined, labels, 1)
  return report
