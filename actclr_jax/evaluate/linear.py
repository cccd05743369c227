"""The linear protocol on cached features: a new linear layer trained by SGD.

The defaults follow the family's linear evaluation (NOTES.md): SGD momentum 0.9,
lr 3.0 at batch 128, weight decay 0, 100 epochs, x0.1 at epoch 80, no augmentation.
Each epoch runs as one jitted `lax.scan` over its batches, so training on cached
features takes seconds. The same function trains the per-frame classifier of action
segmentation on (num_frames_total, C) features; pass a larger batch_size there (and
scale lr linearly, e.g. 24 at batch 1024).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from actclr_jax import schedules
from actclr_jax.evaluate import metrics


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
                 log_every: int | None = 10,
                 callback: Callable[[int, dict[str, float]], Any] | None = None
                 ) -> dict[str, Any]:
  """Trains a linear classifier on cached features and evaluates it after every epoch.

  Args:
    train_x: (N, C) float features; train_y: (N,) class ids in [0, num_classes).
    val_x: (M, C) features; val_y: (M,) class ids.
    num_classes: output classes.
    epochs, batch_size, lr, momentum, weight_decay, nesterov: SGD settings. Weight decay
      is added to the gradient before momentum (PyTorch convention) and also applies to
      the bias.
    decay_epochs: epochs (0-based) from which the lr is multiplied by another 0.1.
    seed: seeds the parameter init (jax) and the per-epoch shuffling (numpy).
    eval_batch_size: rows per jitted evaluation call.
    log_every: log a line every this many epochs (None: never).
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
  schedule = schedules.step_decay(lr, decay_epochs, steps_per_epoch)
  tx = optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov)
  if weight_decay:
    tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)

  model = LinearClassifier(num_classes)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, train_x.shape[1])))
  opt_state = tx.init(params)

  def loss_fn(p, xb, yb, mb):
    losses = optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xb), yb)
    return jnp.sum(losses * mb) / jnp.maximum(jnp.sum(mb), 1.0)

  @jax.jit
  def run_epoch(p, state, x, y, index, mask):
    def step(carry, batch):
      p, state = carry
      bi, bm = batch
      loss, grads = jax.value_and_grad(loss_fn)(p, x[bi], y[bi], bm)
      updates, state = tx.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), (loss * jnp.sum(bm))

    (p, state), weighted = jax.lax.scan(step, (p, state), (index, mask))
    return p, state, jnp.sum(weighted) / jnp.sum(mask)

  predict = jax.jit(model.apply)
  eval_chunk = max(1, min(eval_batch_size, len(val_x)))

  def val_logits_of(p) -> np.ndarray:
    out = []
    for start in range(0, len(val_x), eval_chunk):
      block = val_x[start:start + eval_chunk]
      valid = len(block)
      if valid < eval_chunk:
        block = np.concatenate([block, np.zeros((eval_chunk - valid, block.shape[1]),
                                                np.float32)])
      out.append(np.asarray(predict(p, jnp.asarray(block)))[:valid])
    return np.concatenate(out)

  x_dev, y_dev = jnp.asarray(train_x), jnp.asarray(train_y)
  rng = np.random.default_rng(seed)
  history = {"top1_history": [], "top5_history": [], "loss_history": []}
  best = {"best_top1": -1.0}
  start_time = time.perf_counter()
  for epoch in range(1, epochs + 1):
    index, mask = _epoch_batches(rng, n, batch_size)
    lr_now = float(schedule((epoch - 1) * steps_per_epoch))
    params, opt_state, loss = run_epoch(params, opt_state, x_dev, y_dev,
                                        jnp.asarray(index), jnp.asarray(mask))
    logits = val_logits_of(params)
    ranks = metrics.topk_ranks(logits, val_y)
    top1 = float(100.0 * np.mean(ranks < 1))
    top5 = float(100.0 * np.mean(ranks < 5))
    loss = float(loss)
    if not math.isfinite(loss):
      raise FloatingPointError(f"linear training diverged at epoch {epoch} (loss {loss}, "
                               f"lr {lr_now}); lower lr")
    history["top1_history"].append(top1)
    history["top5_history"].append(top5)
    history["loss_history"].append(loss)
    if top1 > best["best_top1"]:
      best = {"best_top1": top1, "best_epoch": epoch, "top5_at_best": top5,
              "best_params": jax.device_get(params), "best_val_logits": logits}
    record = {"loss": loss, "top1": top1, "top5": top5, "lr": lr_now}
    if log_every and (epoch % log_every == 0 or epoch == epochs):
      logging.info("linear epoch %d/%d: loss %.4f, lr %.4g, val top-1 %.2f, top-5 %.2f "
                   "(best %.2f at %d)", epoch, epochs, loss, lr_now, top1, top5,
                   best["best_top1"], best["best_epoch"])
    if callback is not None:
      callback(epoch, record)
  seconds = time.perf_counter() - start_time

  return {
      **history,
      "final_top1": history["top1_history"][-1],
      "final_top5": history["top5_history"][-1],
      **best,
      "params": jax.device_get(params),
      "val_logits": logits,
      "seconds": seconds,
      "steps_per_epoch": steps_per_epoch,
  }


def predict_logits(params, features, *, batch_size: int = 8192) -> np.ndarray:
  """(N, num_classes) logits of a trained linear classifier's `params` on (N, C) features."""
  features = np.asarray(features, dtype=np.float32)
  num_classes = params["params"]["Dense_0"]["bias"].shape[0]
  apply = jax.jit(LinearClassifier(num_classes).apply)
  out = [np.asarray(apply(params, jnp.asarray(features[s:s + batch_size])))
         for s in range(0, len(features), batch_size)]
  return np.concatenate(out) if out else np.zeros((0, num_classes), np.float32)
