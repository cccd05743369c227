"""The evaluation protocols on a pretraining checkpoint: one function per `--mode` of main.py.

Every protocol restores the latest pretraining state from `{workdir}/checkpoints` (transfer:
from `config.eval.source_workdir`), evaluates, writes `{workdir}/eval/{mode}.json` =
{mode, config, checkpoint, step, metrics, seconds} and prints one summary line.

Which network: the online (query) encoder with its BatchNorm statistics, in inference mode,
as the pretraining KNN monitor uses; the actionlet figures use the offline (momentum)
network, as training does. Learning rates in the config are per 128 samples and scaled
linearly with the batch size.

Evaluation runs on this process's local devices only: on several hosts every process computes
the same result and process 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
import types

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P

from actclr_jax import actionlet as actionlet_lib
from actclr_jax import config_checks, graph, parallel, schedules, visualize
from actclr_jax.data import io, pipeline, pku_mmd, preprocess, streams, synthetic
from actclr_jax.evaluate import bn_recalibration, ensemble, knn, linear, metrics, monitor, semi
from actclr_jax.models import builder, stgcn

MODES = ("knn", "linear", "finetune", "semi", "transfer", "ensemble", "segment", "visualize")
BACKGROUND = -1  # per-frame label of frames outside every action (PKU-MMD convention)


# ------------------------------------------------------------------------------------------
# Restoring the pretraining state.


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """What the protocols need from a pretraining checkpoint (numpy arrays)."""
  workdir: str
  path: str  # the checkpoint directory of `step`
  step: int
  params: dict  # online {'encoder', 'projector'}
  batch_stats: dict  # online {'encoder'}
  ema_params: dict  # offline
  ema_batch_stats: dict
  anchor: np.ndarray  # (C, T, V, M) static anchor


def _shapes(tree) -> dict[str, tuple]:
  return {k: tuple(np.shape(v)) for k, v in
          flax.traverse_util.flatten_dict(tree, sep="/").items()}


def expected_variables(config: ml_collections.ConfigDict) -> dict:
  """Shapes ({'params', 'batch_stats'} of ShapeDtypeStructs) of the configured ContrastiveNet."""
  model = builder.build_model(config)
  layout = graph.get_layout(config.data.layout)
  x = jnp.zeros((1, 3, config.data.frames, layout.num_joints, 1), jnp.float32)
  key = jax.random.PRNGKey(0)
  return jax.eval_shape(lambda: model.init({"params": key, "dropout": key}, x, train=False))


def _layout_mismatch(config, state: dict, where: str) -> None:
  """Raises a DataError naming `where` and every leaf whose shape differs from the config's."""
  expected = expected_variables(config)
  problems = []
  for group in ("params", "batch_stats"):
    want = _shapes(expected[group])
    have = _shapes(state.get(group, {}))
    for key in sorted(set(want) | set(have)):
      if key not in have:
        problems.append(f"{group}/{key}: missing from the checkpoint")
      elif key not in want:
        problems.append(f"{group}/{key}: in the checkpoint but not in the configured model")
      elif want[key] != have[key]:
        problems.append(f"{group}/{key}: checkpoint {have[key]} vs config {want[key]}")
  if problems:
    shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} in all)"
                                       if len(problems) > 6 else "")
    raise io.DataError(
        f"{where}: checkpoint does not match the configured model (config keys "
        f"data.layout={config.data.layout!r}, model.hidden_channels="
        f"{config.model.hidden_channels}, model.out_channels={config.model.out_channels}, "
        f"model.projection_dim={config.model.projection_dim}): {shown}. Evaluate with the "
        f"config the run was pretrained with{_pretrained_with(where)}.")


def _pretrained_with(checkpoint: str) -> str:
  """' (its config.json: data.layout=..., model=...)' of the run owning `checkpoint`, or ''."""
  path = os.path.join(os.path.dirname(os.path.dirname(checkpoint)), "config.json")
  try:
    with open(path) as f:
      saved = json.load(f)
    return f" ({path}: data.layout={saved['data']['layout']!r}, model={saved['model']})"
  except (OSError, ValueError, KeyError, TypeError):
    return ""


def restore_pretrained(workdir: str, config: ml_collections.ConfigDict) -> Pretrained:
  """Restores the latest checkpoint of `{workdir}/checkpoints` and checks it fits the config."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(directory) if os.path.isdir(directory) else None
  step = None if manager is None else manager.latest_step()
  if step is None:
    raise io.DataError(f"{directory}: no checkpoint to evaluate; pretrain first "
                       f"(python main.py --mode=pretrain --workdir={workdir}) or fix --workdir")
  path = os.path.join(directory, str(step))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  except Exception as e:  # orbax raises several types for unreadable or foreign checkpoints
    raise io.DataError(f"{path}: cannot restore the pretraining state: {e}") from e
  state = jax.tree.map(np.asarray, restored["state"])
  if not isinstance(state, dict) or "params" not in state or "ema_state" not in state:
    raise io.DataError(f"{path}: not an ActCLR pretraining checkpoint (no params / ema_state)")
  _layout_mismatch(config, state, path)
  return Pretrained(workdir=workdir, path=path, step=int(step), params=state["params"],
                    batch_stats=state["batch_stats"], ema_params=state["ema_state"]["ema"],
                    ema_batch_stats=state["ema_batch_stats"], anchor=state["anchor"])


# ------------------------------------------------------------------------------------------
# Shared pieces: data, features, results.


def check_classes(train: pipeline.SplitArrays, val: pipeline.SplitArrays) -> None:
  """Raises a DataError naming the val classes the train split lacks."""
  missing = sorted(set(np.unique(val.labels).tolist()) - set(np.unique(train.labels).tolist()))
  if missing:
    raise io.DataError(f"{val.path}: val class(es) {missing} have no training sample in "
                       f"{train.path}; a classifier trained on this split cannot predict them")


def load_eval_data(config: ml_collections.ConfigDict) -> pipeline.Data:
  """The train and val splits of the config, unsharded (every process reads all of them)."""
  data = pipeline.load_data(config)
  check_classes(data.train, data.val)
  return dataclasses.replace(data, shard=(0, 1))


def _variables(pre: Pretrained) -> dict:
  return {"params": pre.params, "batch_stats": pre.batch_stats}


# Jitted functions are cached per (model, options), so that protocols run one after another
# in a process (the tests, a notebook) compile each of them once.
@functools.lru_cache(maxsize=16)
def _feature_fn(model: stgcn.ContrastiveNet, key: str):
  return jax.jit(lambda v, x: model.apply(v, x, train=False)[key])


def encoder_features(pre: Pretrained, arrays: pipeline.SplitArrays, data: pipeline.Data,
                     config, feature: str = "encoder") -> np.ndarray:
  """(N, D) features of every sample: the pooled encoder output or the projector's z."""
  if feature not in ("encoder", "projector"):
    raise ValueError(f"config key eval.knn_feature={feature!r}: encoder or projector")
  apply = _feature_fn(builder.build_model(config), "feature" if feature == "encoder" else "z")
  variables = _variables(pre)
  return monitor.extract_features(lambda x: apply(variables, x), arrays, data, config,
                                  parallel.local_batch_sharding())


def _feature_tag(config) -> str:
  tag = f"{config.data.dataset}_{config.data.split}_{config.data.stream}_t{config.data.frames}"
  return tag + ("_bnrecal" if config.eval.bn_recalibration else "")


def recalibrated(pre: Pretrained, data: pipeline.Data, config) -> Pretrained:
  """`pre` with its online BatchNorm statistics re-estimated on clean training data when config
  key eval.bn_recalibration is set (bn_recalibration.py), else `pre` itself.

  Batches of eval.bn_recalibration_batch_size samples in a fixed random order (seed 0), the
  remainder dropped.
  """
  if not config.eval.bn_recalibration:
    return pre
  train = data.train
  size = min(int(config.eval.bn_recalibration_batch_size), len(train))
  order = np.random.default_rng(0).permutation(len(train))
  batches = (streams.to_stream(np.asarray(train.data[np.sort(order[s:s + size])], np.float32),
                               config.data.stream, data.layout)
             for s in range(0, len(train) - size + 1, size))
  batch_stats = bn_recalibration.recalibrate(builder.build_model(config), pre.params,
                                             pre.batch_stats, batches)
  return dataclasses.replace(pre, batch_stats=batch_stats)


def cached_features(pre: Pretrained, data: pipeline.Data, config, workdir: str) -> dict:
  """Train and val encoder features, cached in `{workdir}/eval/features_step{N}_{tag}.npz`.

  The cache records the checkpoint and data files it came from and is rebuilt when they differ.
  """
  path = os.path.join(workdir, "eval", f"features_step{pre.step}_{_feature_tag(config)}.npz")
  source = {"checkpoint": os.path.abspath(pre.path), "train": os.path.abspath(data.train.path),
            "val": os.path.abspath(data.val.path)}
  if os.path.exists(path):
    with np.load(path) as cache:
      cached = {k: cache[k] for k in cache.files}
    if (json.loads(str(cached.get("source", "{}"))) == source
        and len(cached["train_x"]) == len(data.train) and len(cached["val_x"]) == len(data.val)):
      logging.info("features from the cache %s", path)
      return cached
    logging.info("the feature cache %s is for another checkpoint or data; rebuilding", path)
  features = {
      "train_x": encoder_features(pre, data.train, data, config),
      "train_y": np.asarray(data.train.labels, np.int64),
      "val_x": encoder_features(pre, data.val, data, config),
      "val_y": np.asarray(data.val.labels, np.int64),
  }
  if jax.process_index() == 0:
    with io.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, source=json.dumps(source), **features)
  return features


def _save_logits(workdir: str, mode: str, logits: np.ndarray, labels: np.ndarray) -> None:
  if jax.process_index() == 0:
    io.save_npy(os.path.join(workdir, "eval", f"{mode}_val_logits.npy"),
                np.asarray(logits, np.float32))
    io.save_npy(os.path.join(workdir, "eval", f"{mode}_val_labels.npy"),
                np.asarray(labels, np.int64))


def _finish(mode: str, config, workdir: str, step, checkpoint, result: dict,
            start: float, names: tuple[str, ...] = ()) -> dict:
  """Writes `{workdir}/eval/{mode}.json` (and copies under `names`), prints a summary line."""
  record = {"mode": mode, "config": json.loads(config.to_json_best_effort()),
            "checkpoint": checkpoint, "step": step, "metrics": result,
            "seconds": time.time() - start}
  if jax.process_index() == 0:
    for name in (mode,) + names:
      with io.atomic_path(os.path.join(workdir, "eval", f"{name}.json")) as tmp:
        with open(tmp, "w") as f:
          json.dump(record, f, indent=2)
  scalars = ", ".join(f"{k} {v:.2f}" for k, v in result.items()
                      if isinstance(v, float) and k != "seconds")
  print(f"[{mode}] step {step}: {scalars}", flush=True)
  return record


# ------------------------------------------------------------------------------------------
# kNN and linear evaluation (and transfer: linear with another run's encoder).


def run_knn(config, workdir: str) -> dict:
  start = time.time()
  data = load_eval_data(config)
  pre = recalibrated(restore_pretrained(workdir, config), data, config)
  feature = config.eval.knn_feature
  train_x = encoder_features(pre, data.train, data, config, feature)
  val_x = encoder_features(pre, data.val, data, config, feature)
  if config.eval.standardize_features:
    train_x, val_x = knn.standardize(train_x, val_x)
  accuracy = knn.knn_accuracy(train_x, data.train.labels, val_x, data.val.labels,
                              ks=tuple(config.eval.knn_ks),
                              temperature=config.eval.knn_temperature,
                              num_classes=config.data.num_classes)
  result = {f"top1_k{k}": v for k, v in accuracy.items()}
  result.update(feature=feature, feature_dim=int(train_x.shape[1]),
                bn_recalibration=bool(config.eval.bn_recalibration),
                standardize_features=bool(config.eval.standardize_features),
                chance=100.0 / config.data.num_classes)
  return _finish("knn", config, workdir, pre.step, pre.path, result, start)


def _linear(mode: str, pre: Pretrained, config, workdir: str, start: float) -> dict:
  data = load_eval_data(config)
  pre = recalibrated(pre, data, config)
  feature_start = time.time()
  f = cached_features(pre, data, config, workdir)
  feature_seconds = time.time() - feature_start
  train_x, val_x = f["train_x"], f["val_x"]
  if config.eval.standardize_features:
    train_x, val_x = knn.standardize(train_x, val_x)
  batch = min(config.eval.linear_batch_size, len(train_x))
  out = linear.train_linear(
      train_x, f["train_y"], val_x, f["val_y"], num_classes=config.data.num_classes,
      epochs=config.eval.linear_epochs, batch_size=batch,
      lr=schedules.scaled_lr(config.eval.linear_lr, batch), weight_decay=config.eval.linear_weight_decay,
      decay_epochs=tuple(config.eval.linear_decay_epochs), seed=config.seed)
  _save_logits(workdir, mode, out["val_logits"], f["val_y"])
  result = {"final_top1": out["final_top1"], "final_top5": out["final_top5"],
            "best_top1_over_epochs": out["best_top1"], "best_epoch": out["best_epoch"],
            "top5_at_best_epoch": out["top5_at_best"], "feature_seconds": feature_seconds,
            "train_seconds": out["seconds"], "top1_history": out["top1_history"],
            "bn_recalibration": bool(config.eval.bn_recalibration),
            "standardize_features": bool(config.eval.standardize_features),
            "chance": 100.0 / config.data.num_classes}
  return _finish(mode, config, workdir, pre.step, pre.path, result, start)


def run_linear(config, workdir: str) -> dict:
  start = time.time()
  return _linear("linear", restore_pretrained(workdir, config), config, workdir, start)


def run_transfer(config, workdir: str) -> dict:
  """Linear evaluation on the config's data set of the encoder pretrained in source_workdir."""
  start = time.time()
  source = config.eval.source_workdir
  if not source:
    raise ValueError("transfer needs the pretraining run to evaluate: set "
                     "--config.eval.source_workdir=PATH (the workdir of e.g. an NTU-60 run)")
  return _linear("transfer", restore_pretrained(source, config), config, workdir, start)


# ------------------------------------------------------------------------------------------
# Finetuning and semi-supervised finetuning of the whole network.


def build_classifier(config) -> stgcn.Classifier:
  return stgcn.Classifier(
      num_classes=config.data.num_classes, layout=config.data.layout,
      hidden_channels=config.model.hidden_channels, out_channels=config.model.out_channels,
      dropout=config.eval.finetune_dropout, edge_importance=config.model.edge_importance)


@functools.lru_cache(maxsize=4)
def _finetune_fns(model: stgcn.Classifier, weight_decay: float):
  """(tx, jitted train step, jitted predict) of finetuning `model`.

  The learning rate is an argument of the step, applied after the momentum transform, which
  is what optax.sgd(schedule, nesterov=True) and PyTorch's SGD compute; so one compiled step
  serves every schedule and batch count.
  """
  tx = optax.chain(optax.add_decayed_weights(weight_decay),
                   optax.trace(decay=0.9, nesterov=True))

  @jax.jit
  def train_step(params, batch_stats, opt_state, x, y, rng, lr):
    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                    mutable=["batch_stats"], rngs={"dropout": rng})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, updates["batch_stats"]
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss

  predict = jax.jit(lambda p, b, x: model.apply({"params": p, "batch_stats": b}, x, train=False))
  return tx, train_step, predict


def finetune(pre: Pretrained, data: pipeline.Data, train: pipeline.SplitArrays, config) -> dict:
  """Trains Classifier (pretrained encoder + new linear head) on `train`, evaluates on data.val.

  SGD Nesterov (momentum 0.9) with coupled weight decay, lr x0.1 at each decay epoch,
  cross-entropy, dropout on, no augmentation. Evaluates after every epoch.

  Returns top-1/top-5 final and best over epochs, histories, and the final val logits.
  """
  ev = config.eval
  n_devices = jax.local_device_count()
  batch = min(ev.finetune_batch_size, len(train))
  batch -= batch % n_devices
  if batch < n_devices:
    raise ValueError(f"{train.path}: {len(train)} training samples, fewer than the "
                     f"{n_devices} devices")
  steps = len(train) // batch
  schedule = schedules.step_decay(schedules.scaled_lr(ev.finetune_lr, batch),
                                  ev.finetune_decay_epochs, steps)
  model = build_classifier(config)
  tx, train_step, predict = _finetune_fns(model, float(ev.finetune_weight_decay))
  sharding = parallel.local_batch_sharding()
  replicated = NamedSharding(sharding.mesh, P())
  key = jax.random.PRNGKey(config.seed)
  init = model.init({"params": key, "dropout": key}, jnp.zeros((1,) + train.data.shape[1:]),
                    train=False)
  params = {"encoder": pre.params["encoder"], "head": init["params"]["head"]}
  batch_stats = {"encoder": pre.batch_stats["encoder"]}
  params, batch_stats = jax.device_put((params, batch_stats), replicated)
  opt_state = tx.init(params)
  step = 0
  history = {"top1_history": [], "top5_history": [], "loss_history": []}
  best = {"best_top1_over_epochs": -1.0}
  for epoch in range(ev.finetune_epochs):
    losses = []
    for b in pipeline.train_loader(train, global_batch_size=batch, epoch=epoch, seed=config.seed,
                                   stream=config.data.stream, layout=data.layout,
                                   worker_count=config.data.worker_count):
      g = parallel.to_global({"data": b["data"], "label": b["label"]}, sharding)
      key, step_key = jax.random.split(key)
      params, batch_stats, opt_state, loss = train_step(
          params, batch_stats, opt_state, g["data"], g["label"], step_key,
          jnp.float32(schedule(step)))
      step += 1
      losses.append(loss)
    loss = float(np.mean(jax.device_get(losses)))
    if not math.isfinite(loss):
      raise FloatingPointError(f"finetuning diverged in epoch {epoch + 1} (loss {loss}); "
                               f"lower config key eval.finetune_lr")
    logits = monitor.extract_features(lambda x: predict(params, batch_stats, x), data.val, data,
                                      config, sharding)
    top1 = metrics.topk_accuracy(logits, data.val.labels, 1)
    top5 = metrics.topk_accuracy(logits, data.val.labels, 5)
    history["top1_history"].append(top1)
    history["top5_history"].append(top5)
    history["loss_history"].append(loss)
    if top1 > best["best_top1_over_epochs"]:
      best = {"best_top1_over_epochs": top1, "best_epoch": epoch + 1, "top5_at_best_epoch": top5}
    logging.info("finetune epoch %d/%d: loss %.4f, val top-1 %.2f, top-5 %.2f", epoch + 1,
                 ev.finetune_epochs, loss, top1, top5)
  return {"final_top1": history["top1_history"][-1], "final_top5": history["top5_history"][-1],
          **best, **history, "batch_size": batch, "val_logits": logits}


def _run_finetune(mode: str, config, workdir: str, fraction: float | None) -> dict:
  start = time.time()
  pre = restore_pretrained(workdir, config)
  data = load_eval_data(config)
  train = data.train
  extra = {}
  if fraction is not None:
    index = semi.sample_per_class(train.labels, fraction, config.eval.semi_seed)
    train = dataclasses.replace(
        train, data=np.asarray(train.data[index]), labels=np.asarray(train.labels)[index],
        names=[train.names[i] for i in index], actionlet=None)
    extra = {"fraction": float(fraction), "labelled_samples": int(len(index)),
             "semi_seed": int(config.eval.semi_seed)}
  out = finetune(pre, data, train, config)
  _save_logits(workdir, mode, out.pop("val_logits"), data.val.labels)
  out.update(extra, chance=100.0 / config.data.num_classes)
  names = () if fraction is None else (f"semi_{100 * fraction:g}pct",)
  return _finish(mode, config, workdir, pre.step, pre.path, out, start, names)


def run_finetune(config, workdir: str) -> dict:
  return _run_finetune("finetune", config, workdir, None)


def run_semi(config, workdir: str) -> dict:
  """Finetuning on semi_fraction of the labels (per class); also writes eval/semi_<pct>pct.json."""
  return _run_finetune("semi", config, workdir, config.eval.semi_fraction)


# ------------------------------------------------------------------------------------------
# The 3-stream ensemble.


def run_ensemble(config, workdir: str) -> dict:
  """0.6 J + 0.6 B + 0.4 M of the saved val logits of `eval.ensemble_source` in three runs."""
  start = time.time()
  source = config.eval.ensemble_source
  workdirs = dict(config.eval.ensemble_workdirs)
  weights = {k: float(v) for k, v in config.eval.ensemble_weights.items()}
  unset = sorted(s for s in weights if not workdirs.get(s))
  if unset:
    raise ValueError(f"ensemble: no workdir for stream(s) {unset}: set "
                     + " ".join(f"--config.eval.ensemble_workdirs.{s}=PATH" for s in unset))
  logits, steps, labels = {}, {}, None
  for stream in weights:
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
  report = ensemble.ensemble_report(logits, labels, weights)
  result = {f"{k}_top1": v for k, v in report.items()}
  result.update(weights=weights, source=source, workdirs=workdirs)
  return _finish("ensemble", config, workdir, steps, workdirs, result, start)


# ------------------------------------------------------------------------------------------
# Unsupervised action segmentation.


def synthetic_untrimmed(num_sequences: int, actions_per_sequence: int, *, clip_frames: int,
                        seed: int, subjects: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """Untrimmed sequences made of consecutive synthetic clips, like PKU-MMD's arrays.

  Each sequence concatenates the valid frames of `actions_per_sequence` clips of
  `synthetic.generate` from subjects 'odd' (train) or 'even' (val). A frame's label is the
  clip's class where the clip's ground-truth actionlet is non-empty, else BACKGROUND (the idle
  frames before and after each action).

  Returns:
    per sequence (frames (T, 3, 25, 2) float32, labels (T,) int32).
  """
  need = num_sequences * actions_per_sequence
  generated = synthetic.generate(3 * need, seed=seed, max_frames=clip_frames,
                                 min_frames=clip_frames // 2)
  parity = 1 if subjects == "odd" else 0
  chosen = np.flatnonzero(generated["subject"] % 2 == parity)[:need]
  if len(chosen) < need:
    raise ValueError(f"synthetic_untrimmed: only {len(chosen)} {subjects}-subject clips")
  clips = []
  for i in chosen:
    t = int(generated["num_frames"][i])
    moving = generated["actionlet"][i, :t].any(axis=1)
    labels = np.where(moving, generated["label"][i], BACKGROUND).astype(np.int32)
    clips.append((generated["data"][i, :, :t].transpose(1, 0, 2, 3), labels))
  return [(np.concatenate([c[0] for c in group]), np.concatenate([c[1] for c in group]))
          for group in (clips[k:k + actions_per_sequence]
                        for k in range(0, need, actions_per_sequence))]


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


def frame_features(pre: Pretrained, sequences, config, layout: graph.Layout) -> list[np.ndarray]:
  """Per-frame (T, C) features of each (T, 3, V, M) sequence from the frozen encoder.

  Sliding windows (eval.segment_window frames, step eval.segment_stride) are encoded without
  temporal pooling (mean over joints and bodies only), upsampled back to their input frames
  with `upsample_matrix`, and each frame averages the windows that cover it.
  """
  ev = config.eval
  window, batch = ev.segment_window, config.eval_batch_size
  model = builder.build_model(config)
  variables = _variables(pre)
  sharding = parallel.local_batch_sharding()
  encode = _frame_feature_fn(model)
  jobs = [(s, start) for s, (frames, _) in enumerate(sequences)
          for start in window_starts(len(frames), window, ev.segment_stride)]
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


def _segment_sequences(config, part: str) -> tuple[list, str]:
  ev = config.eval
  if config.data.dataset == "synthetic":
    seed = config.data.synthetic_seed + (1 if part == "train" else 2)
    sequences = synthetic_untrimmed(
        ev.segment_synthetic_sequences, ev.segment_synthetic_actions,
        clip_frames=ev.segment_synthetic_clip_frames, seed=seed,
        subjects="odd" if part == "train" else "even")
    return sequences, f"synthetic concatenations ({part})"
  split_dir = os.path.join(ev.segment_root or config.data.root, "untrimmed", config.data.split)
  return pku_mmd.load_untrimmed(split_dir, part), os.path.join(split_dir, part)


def run_segment(config, workdir: str) -> dict:
  """Per-frame linear classifier on frozen frame features; ACC, MACC, FWIoU, mIoU.

  Background frames (label -1) are one more class, id num_classes; the metrics count it. The
  majority baseline predicts the most frequent training frame class everywhere.
  """
  start = time.time()
  ev = config.eval
  pre = restore_pretrained(workdir, config)
  layout = graph.get_layout(config.data.layout)
  num_classes = config.data.num_classes + 1
  parts = {}
  for part in ("train", "val"):
    sequences, where = _segment_sequences(config, part)
    if not sequences:
      raise io.DataError(f"{where}: no untrimmed sequences")
    labels = np.concatenate([np.asarray(l) for _, l in sequences]).astype(np.int64)
    if labels.min() < BACKGROUND or labels.max() >= config.data.num_classes:
      raise io.DataError(f"{where}: frame labels outside [-1, {config.data.num_classes}) "
                         f"(config key data.num_classes)")
    labels = np.where(labels == BACKGROUND, config.data.num_classes, labels)
    parts[part] = (np.concatenate(frame_features(pre, sequences, config, layout)), labels, where)
  (train_x, train_y, train_where), (val_x, val_y, val_where) = parts["train"], parts["val"]
  missing = sorted(set(np.unique(val_y).tolist()) - set(np.unique(train_y).tolist()))
  if missing:
    raise io.DataError(f"{val_where}: val frame class(es) {missing} never occur in "
                       f"{train_where}")
  if ev.standardize_features:
    train_x, val_x = knn.standardize(train_x, val_x)
  step = max(1, ev.segment_train_frame_step)
  batch = min(ev.segment_batch_size, len(train_x[::step]))
  out = linear.train_linear(
      train_x[::step], train_y[::step], val_x, val_y, num_classes=num_classes,
      epochs=ev.segment_epochs, batch_size=batch, lr=schedules.scaled_lr(ev.segment_lr, batch),
      decay_epochs=tuple(ev.segment_decay_epochs), seed=config.seed)
  pred = np.argmax(out["val_logits"], axis=1)
  result = metrics.segmentation_metrics(pred, val_y, num_classes)
  majority = int(np.bincount(train_y, minlength=num_classes).argmax())
  baseline = metrics.segmentation_metrics(np.full_like(val_y, majority), val_y, num_classes)
  result.update({f"majority_{k}": v for k, v in baseline.items()})
  result.update(train_frames=int(len(train_x)), val_frames=int(len(val_x)),
                background_fraction=float(np.mean(val_y == config.data.num_classes)),
                train_seconds=out["seconds"], data=val_where)
  return _finish("segment", config, workdir, pre.step, pre.path, result, start)


# ------------------------------------------------------------------------------------------
# Figures.


def run_visualize(config, workdir: str) -> dict:
  """Writes PNGs to `{workdir}/figures/`: the anchor (Fig. 4), actionlets of a few val samples
  on the skeleton and as (T x V) heat maps (Fig. 5), and a PCA of the val features."""
  start = time.time()
  pre = restore_pretrained(workdir, config)
  data = load_eval_data(config)
  layout = data.layout
  figures = os.path.join(workdir, "figures")
  os.makedirs(figures, exist_ok=True)
  if tuple(pre.anchor.shape[1:3]) != tuple(data.val.data.shape[2:4]):
    raise io.DataError(f"{pre.path}: anchor of shape {pre.anchor.shape} does not fit the val "
                       f"data {data.val.data.shape} of {data.val.path} (config key data.frames)")
  written = [visualize.plot_skeleton_sequence(
      os.path.join(figures, "anchor.png"), pre.anchor[..., 0], layout,
      title=f"static anchor (average {config.data.stream}), step {pre.step}")]

  n = min(config.eval.visualize_samples, len(data.val))
  joints = np.asarray(data.val.data[:n])
  x = streams.to_stream(joints, config.data.stream, layout)
  model = builder.build_model(config)
  fn = jax.jit(lambda ep, eb, a, x: actionlet_lib.inference_actionlet(
      types.SimpleNamespace(ema_params=ep, ema_batch_stats=eb, anchor=a), x, config=config,
      model=model, layout=layout))
  masks = np.asarray(fn(pre.ema_params, pre.ema_batch_stats, pre.anchor, x))[..., 0]  # body 0
  class_names = synthetic.CLASS_NAMES if config.data.dataset == "synthetic" else None
  truths = None if data.val.actionlet is None else np.asarray(data.val.actionlet[:n]) > 0
  result = {"actionlet_area": float(masks.mean())}
  if truths is not None:
    result["actionlet_iou"] = float(np.mean(actionlet_lib.iou(masks > 0.5, truths)))
  for i in range(n):
    label = int(data.val.labels[i])
    name = class_names[label] if class_names else f"class {label}"
    stem = os.path.join(figures, f"val{i}")
    written.append(visualize.plot_skeleton_sequence(
        stem + "_actionlet.png", joints[i, ..., 0], layout, highlight=masks[i],
        title=f"{data.val.names[i]} ({name}): actionlet joints in red"))
    written.append(visualize.plot_mask_heatmap(
        stem + "_mask.png", masks[i], title=f"{data.val.names[i]} actionlet (T x V)",
        vmin=0.0, vmax=1.0))
    if truths is not None:
      written.append(visualize.plot_mask_heatmap(
          stem + "_truth.png", truths[i], title=f"{data.val.names[i]} ground truth", vmin=0.0,
          vmax=1.0))
  features = encoder_features(pre, data.val, data, config)
  written.append(visualize.plot_embedding(
      os.path.join(figures, "val_pca.png"), features, data.val.labels, class_names=class_names,
      title=f"PCA of val encoder features, step {pre.step}"))
  result["figures"] = [os.path.relpath(p, workdir) for p in written]
  return _finish("visualize", config, workdir, pre.step, pre.path, result, start)


RUNNERS = {"knn": run_knn, "linear": run_linear, "finetune": run_finetune, "semi": run_semi,
           "transfer": run_transfer, "ensemble": run_ensemble, "segment": run_segment,
           "visualize": run_visualize}


def run(mode: str, config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs protocol `mode` and returns the record it wrote to `{workdir}/eval/{mode}.json`."""
  if mode not in RUNNERS:
    raise ValueError(f"Unknown evaluation mode {mode!r}: expected one of {MODES}")
  config_checks.validate_config(config)
  return RUNNERS[mode](config, workdir)
