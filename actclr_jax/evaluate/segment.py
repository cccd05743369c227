"""Unsupervised action segmentation: per-frame features of untrimmed sequences from the frozen
encoder, and a per-frame linear classifier on them (config group eval.segment).

Sliding windows of eval.segment.window frames are encoded without temporal pooling, upsampled
back to their input frames, and each frame averages the windows that cover it. The classifier
is linear.train_linear; the metrics are ACC, MACC, FWIoU and mIoU with background (label -1)
as one more class.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np

from actclr_jax import graph, parallel, schedules
from actclr_jax.data import io, preprocess, streams, untrimmed
from actclr_jax.data.prepare import pku_mmd
from actclr_jax.evaluate import base, features, linear, metrics, pretrained
from actclr_jax.models import builder, stgcn


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
  """Window starts covering every frame: every `stride`, plus one ending at the last frame."""
  if num_frames <= window:
    return [0]
  starts = list(range(0, num_frames - window + 1, stride))
  if starts[-1] + window < num_frames:
    starts.append(num_frames - window)
  return starts


def prepare_window(frames: np.ndarray, layout: graph.Layout, window: int, *, center: bool,
                   view_normalize: bool) -> np.ndarray:
  """(t, C, V, M) frames, t <= window -> (C, window, V, M) model input, zero-padded at the end.

  As the training clips: the centre joint is subtracted per frame and body (absent bodies stay
  zero), and the window is rotated about y so that body 0's shoulders lie along x. The frames
  are not resampled: a window of `window` frames is what the encoder saw in pretraining.
  """
  x = np.asarray(frames, np.float64).transpose(1, 0, 2, 3)
  if center:
    present = np.abs(x).sum(axis=(0, 2), keepdims=True) > 0
    x = (x - x[:, :, layout.center:layout.center + 1]) * present
  if view_normalize:
    x = preprocess.rotate_to_shoulders(x, layout)
  out = np.zeros((x.shape[0], window) + x.shape[2:], np.float32)
  out[:, :x.shape[1]] = x
  return out


def upsample_matrix(window: int, feature_frames: int) -> np.ndarray:
  """(window, feature_frames) linear interpolation from encoder frames back to input frames.

  The two stride-2 blocks make encoder frame j the output at input frame 4j (the centre of its
  receptive field), so input frame t reads position t / 4, interpolated between the two
  nearest encoder frames and clamped at the ends.
  """
  stride = 2 ** len(stgcn.STRIDE_2_BLOCKS)
  position = np.clip(np.arange(window) / stride, 0, feature_frames - 1)
  low = np.floor(position).astype(int)
  high = np.minimum(low + 1, feature_frames - 1)
  weight = position - low
  out = np.zeros((window, feature_frames), np.float32)
  out[np.arange(window), low] += 1 - weight
  out[np.arange(window), high] += weight
  return out


@functools.lru_cache(maxsize=4)
def _frame_feature_fn(model: stgcn.ContrastiveNet):
  return jax.jit(lambda v, x: stgcn.frame_pool(
      model.apply(v, x, train=False, method=model.encode)))


def frame_features(pre: pretrained.Pretrained, sequences, config,
                   layout: graph.Layout) -> list[np.ndarray]:
  """Per-frame (T, C) features of each (T, 3, V, M) sequence from the frozen encoder.

  Windows of eval.segment.window frames every eval.segment.stride frames, encoded with the
  mean over joints and bodies only, upsampled with `upsample_matrix`; each frame averages the
  windows that cover it.
  """
  ev = config.eval.segment
  window, batch = ev.window, config.eval_batch_size
  variables = pre.variables
  sharding = parallel.local_batch_sharding()
  encode = _frame_feature_fn(builder.build_model(config))
  jobs = [(s, start) for s, (frames, _) in enumerate(sequences)
          for start in window_starts(len(frames), window, ev.stride)]
  sums = [np.zeros((len(frames), config.model.out_channels), np.float32)
          for frames, _ in sequences]
  counts = [np.zeros((len(frames), 1), np.float32) for frames, _ in sequences]
  upsample = None
  for k in range(0, len(jobs), batch):
    chunk = jobs[k:k + batch]
    x = np.zeros((batch, 3, window) + sequences[0][0].shape[2:], np.float32)
    for i, (s, start) in enumerate(chunk):
      x[i] = prepare_window(sequences[s][0][start:start + window], layout, window,
                            center=config.data.center,
                            view_normalize=config.data.view_normalize)
    x = streams.to_stream(x, config.data.stream, layout)
    h = np.asarray(encode(variables, parallel.to_global({"x": x}, sharding)["x"]))
    if upsample is None:
      upsample = upsample_matrix(window, h.shape[1])
    h = np.einsum("wt,ntc->nwc", upsample, h)
    for i, (s, start) in enumerate(chunk):
      t = min(window, len(sums[s]) - start)
      sums[s][start:start + t] += h[i, :t]
      counts[s][start:start + t] += 1
  return [a / c for a, c in zip(sums, counts)]


def untrimmed_sequences(config, part: str) -> tuple[list, str]:
  """(per sequence (frames (T, C, V, M), labels (T,)), where they came from) of `part`:
  synthetic concatenations for the synthetic data set, else the prepared PKU-MMD arrays under
  {eval.segment.root or data.root}/untrimmed/{data.split}/."""
  ev = config.eval.segment
  if config.data.dataset == "synthetic":
    seed = config.data.synthetic_seed + (1 if part == "train" else 2)
    sequences = untrimmed.synthetic_untrimmed(
        ev.synthetic_sequences, ev.synthetic_actions, clip_frames=ev.synthetic_clip_frames,
        seed=seed, subjects="odd" if part == "train" else "even")
    return sequences, f"synthetic concatenations ({part})"
  split_dir = os.path.join(ev.root or config.data.root, "untrimmed", config.data.split)
  return pku_mmd.load_untrimmed(split_dir, part), os.path.join(split_dir, part)


class Segment(base.Evaluator):
  """Per-frame linear classifier on frozen frame features; ACC, MACC, FWIoU, mIoU.

  Background frames (label -1) are one more class, id num_classes; the metrics count it. The
  majority baseline predicts the most frequent training frame class everywhere.
  """

  name = "segment"

  def run(self, config, workdir: str) -> dict:
    start = time.time()
    ev = config.eval.segment
    pre = pretrained.restore(workdir, config)
    layout = graph.get_layout(config.data.layout)
    num_classes = config.data.num_classes + 1
    parts = {}
    for part in ("train", "val"):
      sequences, where = untrimmed_sequences(config, part)
      if not sequences:
        raise io.DataError(f"{where}: no untrimmed sequences")
      labels = np.concatenate([np.asarray(l) for _, l in sequences]).astype(np.int64)
      if labels.min() < untrimmed.BACKGROUND or labels.max() >= config.data.num_classes:
        raise io.DataError(f"{where}: frame labels outside [-1, {config.data.num_classes}) "
                           f"(config key data.num_classes)")
      labels = np.where(labels == untrimmed.BACKGROUND, config.data.num_classes, labels)
      parts[part] = (np.concatenate(frame_features(pre, sequences, config, layout)), labels,
                     where)
    (train_x, train_y, train_where), (val_x, val_y, val_where) = parts["train"], parts["val"]
    missing = sorted(set(np.unique(val_y).tolist()) - set(np.unique(train_y).tolist()))
    if missing:
      raise io.DataError(f"{val_where}: val frame class(es) {missing} never occur in "
                         f"{train_where}")
    train_x, val_x = features.standardized(config, train_x, val_x)
    step = max(1, ev.train_frame_step)
    batch = min(ev.batch_size, len(train_x[::step]))
    out = linear.train_linear(
        train_x[::step], train_y[::step], val_x, val_y, num_classes=num_classes,
        epochs=ev.epochs, batch_size=batch, lr=schedules.scaled_lr(ev.lr, batch),
        decay_epochs=tuple(ev.decay_epochs), seed=config.seed,
        lr_key="config key eval.segment.lr")
    pred = np.argmax(out["val_logits"], axis=1)
    result = metrics.segmentation_metrics(pred, val_y, num_classes)
    majority = int(np.bincount(train_y, minlength=num_classes).argmax())
    baseline = metrics.segmentation_metrics(np.full_like(val_y, majority), val_y, num_classes)
    result.update({f"majority_{k}": v for k, v in baseline.items()})
    result.update(train_frames=int(len(train_x)), val_frames=int(len(val_x)),
                  background_fraction=float(np.mean(val_y == config.data.num_classes)),
                  train_seconds=out["seconds"], data=val_where)
    return self.finish(config, workdir, pre.step, pre.path, result, start)
