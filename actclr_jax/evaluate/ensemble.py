"""The 3-stream ensemble: a weighted sum of raw logits (0.6 joint + 0.6 bone + 0.4 motion),
and its evaluator over the val logits that three runs saved (config group eval.ensemble)."""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import numpy as np

from actclr_jax.data import io
from actclr_jax.evaluate import base, metrics

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


def load_stream_logits(workdirs: Mapping[str, str], source: str,
                       streams) -> tuple[dict, np.ndarray, dict]:
  """({stream: (M, C) val logits}, (M,) val labels, {stream: checkpoint step or None}) saved
  by `--mode={source}` in each stream's workdir; the streams' labels must agree."""
  logits, steps, labels, first = {}, {}, None, None
  for stream in streams:
    prefix = os.path.join(workdirs[stream], "eval", source)
    paths = [prefix + "_val_logits.npy", prefix + "_val_labels.npy"]
    for path in paths:
      if not os.path.exists(path):
        raise io.DataError(f"{path}: missing; run --mode={source} in {workdirs[stream]} first")
    logits[stream] = np.load(paths[0])
    stream_labels = np.load(paths[1])
    if labels is None:
      labels, first = stream_labels, paths[1]
    elif stream_labels.shape != labels.shape or np.any(stream_labels != labels):
      raise io.DataError(f"{paths[1]}: val labels differ from {first}; the streams must be "
                         f"evaluated on the same val split")
    try:
      with open(prefix + ".json") as f:
        steps[stream] = json.load(f)["step"]
    except (OSError, ValueError, KeyError):
      steps[stream] = None
  return logits, labels, steps


class Ensemble(base.Evaluator):
  """Weighted sum (eval.ensemble.weights) of the val logits that `--mode=eval.ensemble.source`
  saved in each stream's run (eval.ensemble.workdirs); top-1 of each stream and the sum."""

  name = "ensemble"

  def run(self, config, workdir: str) -> dict:
    start = time.time()
    ev = config.eval.ensemble
    workdirs = dict(ev.workdirs)
    weights = {k: float(v) for k, v in ev.weights.items()}
    unset = sorted(s for s in weights if not workdirs.get(s))
    if unset:
      raise ValueError(f"ensemble: no workdir for stream(s) {unset}: set "
                       + " ".join(f"--config.eval.ensemble.workdirs.{s}=PATH" for s in unset))
    logits, labels, steps = load_stream_logits(workdirs, ev.source, weights)
    report = ensemble_report(logits, labels, weights)
    result = {f"{k}_top1": v for k, v in report.items()}
    result.update(weights=weights, source=ev.source, workdirs=workdirs)
    return self.finish(config, workdir, steps, workdirs, result, start)
