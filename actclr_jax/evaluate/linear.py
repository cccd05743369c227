"""The linear probe on cached features: a new linear layer trained by `classifier.fit`.

The defaults follow the family's linear evaluation (NOTES.md): SGD momentum 0.9,
lr 3.0 at batch 128, weight decay 0, 100 epochs, x0.1 at epoch 80, no augmentation.
Each epoch runs as one jitted `lax.scan` of `classifier.train_step` over its batches, so
training on cached features takes seconds. The same function trains the per-frame classifier
of action segmentation on (num_frames_total, C) features; pass a larger batch_size there (and
scale lr linearly, e.g. 24 at batch 1024).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from actclr_jax.evaluate import classifier


class LinearClassifier(nn.Module):
  """Dense layer, weights N(0, 0.01^2), zero bias (the usual linear-probe init)."""

  num_classes: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                    bias_init=nn.initializers.zeros)(x)


def _check_split(x, y, num_classes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, dtype=np.float32)
  y = np.asarray(y)
  if x.ndim != 2:
    raise ValueError(f"{name}_x: expected (N, C) features, got shape {x.shape}")
  if y.shape != (x.shape[0],):
    raise ValueError(f"{name}_y: expected shape ({x.shape[0]},), got {y.shape}")
  if x.shape[0] == 0:
    raise ValueError(f"{name}: no samples")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name}_x: contains NaN or inf")
  y = y.astype(np.int64)
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"{name}_y: class ids must lie in [0, {num_classes}), "
                     f"got [{y.min()}, {y.max()}]")
  return x, y.astype(np.int32)


def _epoch_batches(rng: np.random.Generator, n: int, batch_size: int):
  """A shuffled epoch as (steps, batch) indices and a mask; the last batch is padded."""
  steps = math.ceil(n / batch_size)
  order = rng.permutation(n)
  padded = np.zeros(steps * batch_size, np.int32)
  padded[:n] = order
  mask = np.zeros(steps * batch_size, np.float32)
  mask[:n] = 1.0
  return padded.reshape(steps, batch_size), mask.reshape(steps, batch_size)


def train_linear(train_x, train_y, val_x, val_y, *, num_classes: int, epochs: int = 100,
                 batch_size: int = 128, lr: float = 3.0, momentum: float = 0.9,
                 weight_decay: float = 0.0, decay_epochs: Sequence[int] = (80,),
                 nesterov: bool = False, seed: int = 0, eval_batch_size: int = 8192,
                 log_every: int | None = 10, lr_key: str = "lr",
                 callback: Callable[[int, dict[str, float]], Any] | None = None
                 ) -> dict[str, Any]:
  """Trains a linear classifier on cached features with `classifier.fit`, evaluating it after
  every epoch.

  Args:
    train_x: (N, C) float features; train_y: (N,) class ids in [0, num_classes).
    val_x: (M, C) features; val_y: (M,) class ids.
    num_classes: output classes.
    epochs, batch_size, lr, momentum, weight_decay, nesterov: SGD settings (`classifier.sgd`).
    decay_epochs: epochs (0-based) from which the lr is multiplied by another 0.1.
    seed: seeds the parameter init (jax) and the per-epoch shuffling (numpy).
    eval_batch_size: rows per jitted evaluation call.
    log_every: log a line every this many epochs (None: never).
    lr_key: what the divergence error asks to lower (e.g. 'config key eval.linear.lr').
    callback: called as callback(epoch, record) after each epoch (1-based epoch;
      record has loss, top1, top5, lr).

  Every training sample is used once per epoch: the last, partial batch is padded
  and masked, and its loss averages over its real samples only.

  Returns:
    dict with
      top1_history, top5_history, loss_history: per-epoch lists (val top-1/top-5 in %,
        mean train loss);
      final_top1, final_top5: after the last epoch;
      best_top1, best_epoch (1-based), top5_at_best: the best val top-1 over epochs
        (what the family reports) and when it occurred;
      params, val_logits (M, num_classes): the final classifier and its val logits;
      best_params, best_val_logits: the same at best_epoch;
      seconds: wall time of the whole loop (compilation included); steps_per_epoch.
  """
  if epochs < 1 or batch_size < 1:
    raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
  train_x, train_y = _check_split(train_x, train_y, num_classes, "train")
  val_x, val_y = _check_split(val_x, val_y, num_classes, "val")
  if train_x.shape[1] != val_x.shape[1]:
    raise ValueError(f"feature sizes differ: train {train_x.shape[1]}, val {val_x.shape[1]}")

  n = len(train_x)
  batch_size = min(batch_size, n)
  steps_per_epoch = math.ceil(n / batch_size)
  tx = classifier.sgd(weight_decay, momentum, nesterov)
  model = LinearClassifier(num_classes)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, train_x.shape[1])))

  def loss_fn(p, batch_stats, batch, rng):
    del rng  # no dropout
    xb, yb, mb = batch
    losses = optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xb), yb)
    return jnp.sum(losses * mb) / jnp.maximum(jnp.sum(mb), 1.0), batch_stats

  step = classifier.train_step(loss_fn, tx)

  @jax.jit
  def scan_epoch(p, opt_state, x, y, index, mask, lrs):
    def body(carry, batch):
      p, opt_state = carry
      bi, bm, lr = batch
      p, _, opt_state, loss = step(p, None, opt_state, (x[bi], y[bi], bm), None, lr)
      return (p, opt_state), loss * jnp.sum(bm)

    (p, opt_state), weighted = jax.lax.scan(body, (p, opt_state), (index, mask, lrs))
    return p, opt_state, jnp.sum(weighted) / jnp.sum(mask)

  x_dev, y_dev = jnp.asarray(train_x), jnp.asarray(train_y)
  rng = np.random.default_rng(seed)

  def run_epoch(state, epoch, lrs):
    del epoch  # the shuffling continues one numpy stream
    index, mask = _epoch_batches(rng, n, batch_size)
    p, opt_state, loss = scan_epoch(*state, x_dev, y_dev, jnp.asarray(index),
                                    jnp.asarray(mask), jnp.asarray(lrs))
    return (p, opt_state), loss

  predict = jax.jit(model.apply)
  eval_chunk = max(1, min(eval_batch_size, len(val_x)))

  def val_logits(state) -> np.ndarray:
    out = []
    for start in range(0, len(val_x), eval_chunk):
      block = val_x[start:start + eval_chunk]
      valid = len(block)
      if valid < eval_chunk:
        block = np.concatenate([block, np.zeros((eval_chunk - valid, block.shape[1]),
                                                np.float32)])
      out.append(np.asarray(predict(state[0], jnp.asarray(block)))[:valid])
    return np.concatenate(out)

  out = classifier.fit((params, tx.init(params)), run_epoch, val_logits, val_y, epochs=epochs,
                       lr=lr, decay_epochs=decay_epochs, steps_per_epoch=steps_per_epoch,
                       name="linear", lr_key=lr_key, log_every=log_every,
                       keep_best_state=True, callback=callback)
  out["params"] = jax.device_get(out.pop("state")[0])
  out["best_params"] = out.pop("best_state")[0]
  out["steps_per_epoch"] = steps_per_epoch
  return out


def predict_logits(params, features, *, batch_size: int = 8192) -> np.ndarray:
  """(N, num_classes) logits of a trained linear classifier's `params` on (N, C) features."""
  features = np.asarray(features, dtype=np.float32)
  num_classes = params["params"]["Dense_0"]["bias"].shape[0]
  apply = jax.jit(LinearClassifier(num_classes).apply)
  out = [np.asarray(apply(params, jnp.asarray(features[s:s + batch_size])))
         for s in range(0, len(features), batch_size)]
  return np.concatenate(out) if out else np.zeros((0, num_classes), np.float32)
