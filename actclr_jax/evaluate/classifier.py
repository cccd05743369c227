"""The one classifier-training loop of the evaluators, and finetuning of the whole network.

`fit` trains any classifier by SGD with a step-decay schedule (schedules.step_decay), evaluates
val top-1 / top-5 after every epoch and tracks the best epoch. Its users differ only in how an
epoch runs over their batches, each step built by `train_step`:
  * the linear probe and the per-frame segmentation classifier (linear.py) on cached features,
    one jitted `lax.scan` per epoch;
  * finetune and semi (`finetune` below): the pretrained encoder plus a new linear head,
    BatchNorm in train mode and dropout, one jitted step per batch of the data pipeline.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from actclr_jax import parallel, schedules
from actclr_jax.data import pipeline
from actclr_jax.evaluate import features, metrics
from actclr_jax.evaluate.pretrained import Pretrained
from actclr_jax.models import builder, stgcn

# loss_fn(params, batch_stats, batch, rng) -> (mean loss, new batch_stats)
LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, Any]]


def sgd(weight_decay: float = 0.0, momentum: float = 0.9,
        nesterov: bool = False) -> optax.GradientTransformation:
  """Weight decay added to the gradient (also on biases), then (Nesterov) momentum; without
  the learning rate, which `train_step` applies as -lr * update. That is what
  optax.sgd(schedule) and PyTorch's SGD compute, and one compiled step serves every schedule."""
  parts = []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  if momentum:
    parts.append(optax.trace(decay=momentum, nesterov=nesterov))
  return optax.chain(*parts)


def train_step(loss_fn: LossFn, tx: optax.GradientTransformation):
  """The SGD step (params, batch_stats, opt_state, batch, rng, lr) -> (params, batch_stats,
  opt_state, loss) of `loss_fn` (not jitted: the caller jits or scans it)."""
  def step(params, batch_stats, opt_state, batch, rng, lr):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss
  return step


def fit(state, run_epoch: Callable[[Any, int, np.ndarray], tuple[Any, float]],
        predict: Callable[[Any], np.ndarray], val_labels, *, epochs: int, lr: float,
        decay_epochs: Sequence[int], steps_per_epoch: int, name: str, lr_key: str,
        log_every: int | None = 1, keep_best_state: bool = False,
        callback: Callable[[int, dict[str, float]], Any] | None = None) -> dict[str, Any]:
  """Trains for `epochs` and evaluates on the val set after each.

  Args:
    state: what run_epoch carries (parameters, optimizer state, ...).
    run_epoch: (state, epoch (0-based), lrs (steps_per_epoch,) float32) -> (state, mean loss):
      one epoch, step i at learning rate lrs[i].
    predict: state -> (M, num_classes) val logits.
    val_labels: (M,) class ids.
    lr: the base learning rate (already scaled to the batch size), x0.1 from the first step of
      each epoch in decay_epochs (0-based).
    name, lr_key: the log lines' name, and what to lower when the loss diverges (e.g.
      'config key eval.finetune.lr').
    log_every: log every this many epochs and the last (None: never).
    keep_best_state: also return best_state, the state of the best epoch (host copy).
    callback: called as callback(epoch, {loss, top1, top5, lr}) after each epoch (1-based).

  Returns:
    top1_history, top5_history, loss_history (per epoch; val top-1/top-5 in %, train loss);
    final_top1, final_top5; best_top1, best_epoch (1-based, the first best), top5_at_best,
    best_val_logits; state and val_logits after the last epoch; seconds (compilation
    included).
  """
  if epochs < 1:
    raise ValueError(f"{name}: epochs must be >= 1, got {epochs}")
  schedule = schedules.step_decay(lr, decay_epochs, steps_per_epoch)
  history = {"top1_history": [], "top5_history": [], "loss_history": []}
  best = {"best_top1": -1.0}
  start = time.perf_counter()
  for epoch in range(epochs):
    steps = jnp.arange(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
    # A schedule without boundaries returns its scalar base rate.
    lrs = np.broadcast_to(np.asarray(schedule(steps), np.float32), steps.shape)
    state, loss = run_epoch(state, epoch, lrs)
    loss = float(loss)
    if not math.isfinite(loss):
      raise FloatingPointError(f"{name} diverged in epoch {epoch + 1} (loss {loss}, lr "
                               f"{lrs[0]:.4g}); lower {lr_key}")
    logits = predict(state)
    ranks = metrics.topk_ranks(logits, val_labels)
    top1 = float(100.0 * np.mean(ranks < 1))
    top5 = float(100.0 * np.mean(ranks < 5))
    history["top1_history"].append(top1)
    history["top5_history"].append(top5)
    history["loss_history"].append(loss)
    if top1 > best["best_top1"]:
      best = {"best_top1": top1, "best_epoch": epoch + 1, "top5_at_best": top5,
              "best_val_logits": logits}
      if keep_best_state:
        best["best_state"] = jax.device_get(state)
    if log_every and ((epoch + 1) % log_every == 0 or epoch + 1 == epochs):
      logging.info("%s epoch %d/%d: loss %.4f, lr %.4g, val top-1 %.2f, top-5 %.2f "
                   "(best %.2f at %d)", name, epoch + 1, epochs, loss, lrs[0], top1, top5,
                   best["best_top1"], best["best_epoch"])
    if callback is not None:
      callback(epoch + 1, {"loss": loss, "top1": top1, "top5": top5, "lr": float(lrs[0])})
  return {**history, "final_top1": history["top1_history"][-1],
          "final_top5": history["top5_history"][-1], **best, "state": state,
          "val_logits": logits, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------
# Finetuning: the pretrained encoder and a new linear head, trained together.


def build_classifier(config) -> stgcn.Classifier:
  """The configured encoder with a num_classes head and eval.finetune.dropout."""
  return stgcn.Classifier(
      num_classes=config.data.num_classes, layout=config.data.layout,
      hidden_channels=config.model.hidden_channels, out_channels=config.model.out_channels,
      dropout=config.eval.finetune.dropout, edge_importance=config.model.edge_importance,
      temporal_conv=config.model.temporal_conv, memory_layout=config.model.memory_layout)


# Cached per (model, weight decay), so that finetune and semi in one process share the
# compiled step.
@functools.lru_cache(maxsize=4)
def _finetune_fns(model: stgcn.Classifier, weight_decay: float):
  """(tx, jitted train step, jitted predict) of finetuning `model` (SGD Nesterov, momentum
  0.9, cross-entropy with dropout on)."""
  tx = sgd(weight_decay, momentum=0.9, nesterov=True)

  def loss_fn(params, batch_stats, batch, rng):
    x, y = batch
    logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                  train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates["batch_stats"]

  predict = jax.jit(lambda p, b, x: model.apply({"params": p, "batch_stats": b}, x, train=False))
  return tx, jax.jit(train_step(loss_fn, tx)), predict


def finetune(pre: Pretrained, data: pipeline.Data, train: pipeline.SplitArrays,
             config) -> dict:
  """Trains build_classifier(config) from the pretrained encoder on `train` (N, C, T, V, M)
  and evaluates on data.val after every epoch (config group eval.finetune).

  SGD Nesterov with coupled weight decay, lr x0.1 at each decay epoch, no augmentation; the
  batch is a multiple of the local device count, the remainder of each epoch dropped.

  Returns `fit`'s histories and top-1/top-5 under the record's names (final_top1,
  best_top1_over_epochs, best_epoch, top5_at_best_epoch, ...), batch_size and the final
  val_logits (M, num_classes).
  """
  ev = config.eval.finetune
  n_devices = jax.local_device_count()
  batch = min(ev.batch_size, len(train))
  batch -= batch % n_devices
  if batch < n_devices:
    raise ValueError(f"{train.path}: {len(train)} training samples, fewer than the "
                     f"{n_devices} devices")
  model = build_classifier(config)
  tx, step, predict = _finetune_fns(model, float(ev.weight_decay))
  sharding = parallel.local_batch_sharding()
  key = jax.random.PRNGKey(config.seed)
  init = builder.init_variables(model, key, jnp.zeros((1,) + train.data.shape[1:]))
  params = {"encoder": pre.params["encoder"], "head": init["params"]["head"]}
  batch_stats = {"encoder": pre.batch_stats["encoder"]}
  params, batch_stats = jax.device_put((params, batch_stats), parallel.replicated(sharding.mesh))

  def run_epoch(state, epoch, lrs):
    params, batch_stats, opt_state, key = state
    losses = []
    for i, b in enumerate(pipeline.train_loader(
        train, global_batch_size=batch, epoch=epoch, seed=config.seed,
        stream=config.data.stream, layout=data.layout, worker_count=config.data.worker_count)):
      g = parallel.to_global({"data": b["data"], "label": b["label"]}, sharding)
      key, step_key = jax.random.split(key)
      params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state,
                                                  (g["data"], g["label"]), step_key,
                                                  jnp.float32(lrs[i]))
      losses.append(loss)
    return (params, batch_stats, opt_state, key), np.mean(jax.device_get(losses))

  def predict_val(state):
    params, batch_stats = state[:2]
    return features.extract_features(lambda x: predict(params, batch_stats, x), data.val,
                                     data, config, sharding)

  out = fit((params, batch_stats, tx.init(params), key), run_epoch, predict_val,
            data.val.labels, epochs=ev.epochs, lr=schedules.scaled_lr(ev.lr, batch),
            decay_epochs=ev.decay_epochs, steps_per_epoch=len(train) // batch,
            name="finetune", lr_key="config key eval.finetune.lr")
  return {"final_top1": out["final_top1"], "final_top5": out["final_top5"],
          "best_top1_over_epochs": out["best_top1"], "best_epoch": out["best_epoch"],
          "top5_at_best_epoch": out["top5_at_best"], "top1_history": out["top1_history"],
          "top5_history": out["top5_history"], "loss_history": out["loss_history"],
          "batch_size": batch, "val_logits": out["val_logits"]}
