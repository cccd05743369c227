"""The pretraining loop: data, sharding, checkpoints, logging and the KNN monitor."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

from absl import logging
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from actclr_jax import actionlet, graph
from actclr_jax.data import io, pipeline, streams
from actclr_jax.evaluate import knn
from actclr_jax.train import state as state_lib
from actclr_jax.train import step as step_lib


@dataclasses.dataclass
class Data:
  """The splits a run reads, and how they are batched."""
  layout: graph.Layout
  train: pipeline.SplitArrays
  val: pipeline.SplitArrays
  shard: tuple[int, int]
  steps_per_epoch: int


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks config values that would otherwise fail late, inside compilation."""
  graph.get_layout(config.data.layout)
  checks = [
      ("data.stream", config.data.stream, streams.STREAMS),
      ("optimizer", config.optimizer, ("sgd", "adam")),
      ("actionlet.anchor", config.actionlet.anchor, ("dataset", "batch")),
      ("actionlet.smoothing", config.actionlet.smoothing, ("adjacency", "parts")),
      ("actionlet.grad_activation", config.actionlet.grad_activation, ("relu", "identity")),
  ]
  for key, value, allowed in checks:
    if value not in allowed:
      raise ValueError(f"config key {key}={value!r}: expected one of {allowed}")
  if config.batch_size % jax.device_count():
    raise ValueError(f"config key batch_size={config.batch_size} is not divisible by the "
                     f"{jax.device_count()} devices")
  if config.eval_batch_size % jax.device_count():
    raise ValueError(f"config key eval_batch_size={config.eval_batch_size} is not divisible by "
                     f"the {jax.device_count()} devices")
  if config.moco.shuffle_bn_splits < 1 or config.batch_size % config.moco.shuffle_bn_splits:
    raise ValueError(f"config key moco.shuffle_bn_splits={config.moco.shuffle_bn_splits} must "
                     f"be >= 1 and divide batch_size={config.batch_size}")
  if config.moco.bank_size < config.batch_size:
    raise ValueError(f"config key moco.bank_size={config.moco.bank_size} is smaller than "
                     f"batch_size={config.batch_size}")


def prepare_synthetic_if_missing(config: ml_collections.ConfigDict) -> None:
  """Generates the built-in synthetic set at data.root when it is not there yet."""
  if config.data.dataset != "synthetic":
    return
  if os.path.exists(os.path.join(config.data.root, config.data.split, "train_label.pkl")):
    return
  from actclr_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  logging.info("generating the synthetic data set in %s", config.data.root)
  summary = synthetic.prepare(config.data.root, num_samples=config.data.synthetic_samples,
                              seed=config.data.synthetic_seed)
  logging.info("%s", synthetic.summarize(config.data.root))
  del summary


def load_data(config: ml_collections.ConfigDict) -> Data:
  """Loads and checks the train and val splits named by the config."""
  layout = graph.get_layout(config.data.layout)
  prepare_synthetic_if_missing(config)
  kwargs = dict(frames=config.data.frames, center=config.data.center, resize=config.data.resize,
                view_normalize=config.data.view_normalize)
  train = pipeline.load_split(config.data.root, config.data.split, config.data.train_part, layout,
                              **kwargs)
  val = pipeline.load_split(config.data.root, config.data.split, config.data.val_part, layout,
                            **kwargs)
  for arrays in (train, val):
    if arrays.labels.max(initial=0) >= config.data.num_classes:
      raise io.DataError(f"{arrays.path}: label {arrays.labels.max()} >= config key "
                         f"data.num_classes={config.data.num_classes}")
  shard = pipeline.process_shard()
  spe = pipeline.steps_per_epoch(len(train), config.batch_size, shard[1])
  return Data(layout, train, val, shard, spe)


def make_mesh(devices=None) -> Mesh:
  """A 1-D data-parallel mesh over `devices` (default: every device)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


def jit_train_steps(config, model, tx, ema_tx, layout, mesh: Mesh) -> dict:
  """The MoCo (False) and ActCLR (True) steps, jitted once each: replicated state, batch
  sharded on its leading axis over the mesh, state donated."""
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  return {flag: jax.jit(step_lib.make_train_step(config, model, tx, ema_tx, layout, flag),
                        in_shardings=(replicated, batch_sharding),
                        out_shardings=(replicated, replicated), donate_argnums=0)
          for flag in (False, True)}


def to_global(batch: dict, sharding: NamedSharding) -> dict:
  """Assembles each process's numpy batch into global arrays sharded on the leading axis."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def checkpoint_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))


class MetricsLog:
  """Writes scalars to TensorBoard and to workdir/metrics.jsonl (process 0 only)."""

  def __init__(self, workdir: str):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, scalars: dict) -> None:
    if not self._enabled:
      return
    for name, value in scalars.items():
      self._writer.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self._enabled:
      self._writer.close()
      self._jsonl.close()


def extract_features(encode, arrays: pipeline.SplitArrays, data: Data, config, sharding):
  """Pooled features (N, C) of every sample of `arrays`, in order."""
  chunks = []
  for batch in pipeline.eval_batches(arrays, batch_size=config.eval_batch_size // data.shard[1],
                                     stream=config.data.stream, layout=data.layout,
                                     shard=data.shard):
    mask = batch.pop("mask")
    features = encode(to_global({"data": batch["data"]}, sharding)["data"])
    chunks.append(np.asarray(jax.device_get(features))[mask])
  return np.concatenate(chunks)


def effective_rank(features: np.ndarray) -> float:
  """exp(entropy) of the normalised singular-value energy of (N, D) features: about the number
  of dimensions the features really use (1 when they have collapsed onto a line)."""
  singular = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  energy = singular ** 2 / max(np.sum(singular ** 2), 1e-30)
  return float(np.exp(-np.sum(energy * np.log(energy + 1e-30))))


class Monitor:
  """KNN top-1 of the online encoder (inference mode) and, where the data set has a ground-truth
  actionlet (synthetic), the IoU of the offline network's actionlet with it. Jitted once."""

  def __init__(self, config, model, data: Data, sharding, max_actionlet_samples: int = 512):
    self._config, self._data, self._sharding = config, data, sharding
    self._encode = jax.jit(functools.partial(step_lib.encode_features, model=model))
    self._actionlet = jax.jit(functools.partial(step_lib.inference_actionlet, config=config,
                                                model=model, layout=data.layout))
    n = min(max_actionlet_samples, len(data.val))
    self._num_actionlet = n - n % jax.device_count()

  def __call__(self, state) -> dict:
    config, data = self._config, self._data
    encode = lambda x: self._encode(state.params, state.batch_stats, x)
    train_features = extract_features(encode, data.train, data, config, self._sharding)
    val_features = extract_features(encode, data.val, data, config, self._sharding)
    accuracy = knn.knn_accuracy(train_features, data.train.labels, val_features, data.val.labels,
                                ks=(config.knn_k,), num_classes=config.data.num_classes)
    result = {f"knn_top1_k{config.knn_k}": float(accuracy[config.knn_k])}
    # The same on features standardised by the training set's mean and std: the untrained
    # network's raw features are nearly constant, and this baseline is the fair one.
    train_std, val_std = knn.standardize(train_features, val_features)
    accuracy = knn.knn_accuracy(train_std, data.train.labels, val_std, data.val.labels,
                                ks=(config.knn_k,), num_classes=config.data.num_classes)
    result[f"knn_standardized_top1_k{config.knn_k}"] = float(accuracy[config.knn_k])
    result["feature_effective_rank"] = effective_rank(train_std)
    if data.val.actionlet is not None:
      result.update(self.actionlet_iou(state))
    return result

  def actionlet_iou(self, state, seed: int = 0) -> dict:
    """IoU of body 0's actionlet with the ground truth, and that of a same-area random mask."""
    n, data = self._num_actionlet, self._data
    x = streams.to_stream(np.asarray(data.val.data[:n]), self._config.data.stream, data.layout)
    x = jax.device_put(jnp.asarray(x), self._sharding)
    predicted = np.asarray(self._actionlet(state, x))[..., 0] > 0.5  # (n, T, V), body 0
    truth = np.asarray(data.val.actionlet[:n]) > 0
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(p.ravel()).reshape(p.shape) for p in predicted])
    return {"actionlet_iou": float(np.mean(actionlet.iou(predicted, truth))),
            "random_mask_iou": float(np.mean(actionlet.iou(shuffled, truth))),
            "actionlet_area": float(predicted.mean()),
            "actionlet_all_zero": float(np.mean(~predicted.any(axis=(1, 2)))),
            "actionlet_all_one": float(np.mean(predicted.all(axis=(1, 2))))}


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains ActCLR as configured, resuming from workdir/checkpoints. Returns the last monitor."""
  validate_config(config)
  data = load_data(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  model = state_lib.build_model(config)
  tx = state_lib.build_optimizer(config, data.steps_per_epoch)
  ema_tx = state_lib.ema_transform(config)
  schedule = state_lib.learning_rate_schedule(config, data.steps_per_epoch)
  total_steps = config.num_epochs * data.steps_per_epoch

  manager = checkpoint_manager(workdir, config)
  init = lambda anchor: state_lib.create_train_state(config, model, tx, anchor,
                                                     config.seed)
  latest = manager.latest_step()
  if latest is None:
    anchor = pipeline.mean_sequence(data.train, stream=config.data.stream, layout=data.layout)
    state = jax.device_put(init(anchor), replicated)
    step = 0
  else:
    abstract = jax.eval_shape(init, np.zeros(data.train.data.shape[1:], np.float32))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                            abstract)
    step = latest
  epoch = step // data.steps_per_epoch
  iterator = iter(pipeline.train_loader(
      data.train, global_batch_size=config.batch_size, epoch=epoch, seed=config.seed,
      stream=config.data.stream, layout=data.layout, shard=data.shard,
      worker_count=config.data.worker_count))
  if latest is None:
    # Step 0 is the randomly initialised network: the baseline every protocol can evaluate
    # (pretrain with --config.num_epochs=0 to get it alone).
    manager.save(0, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))
  else:
    restored = manager.restore(latest, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), data=grain.checkpoint.CheckpointRestore(iterator)))
    state = restored["state"]
    logging.info("resumed from %s at step %d (epoch %d)", manager.directory, latest, epoch)

  n_params = sum(x.size for x in jax.tree.leaves(state.params["encoder"]))
  logging.info("encoder parameters: %d (%.3f M); %d devices; %d steps/epoch; %d epochs",
               n_params, n_params / 1e6, jax.device_count(), data.steps_per_epoch,
               config.num_epochs)
  steps = jit_train_steps(config, model, tx, ema_tx, data.layout, mesh)
  log = MetricsLog(workdir)
  monitor = Monitor(config, model, data, batch_sharding)
  pending, last_monitor, first_monitor = [], {}, {}
  epoch_sums, epoch_count = {}, 0
  if step == 0 and config.knn_at_start:
    # The untrained encoder's KNN is the baseline that pretraining must beat.
    last_monitor = first_monitor = monitor(state)
    log.write(0, last_monitor)
    logging.info("before training: %s", ", ".join(f"{k} {v:.4f}" for k, v in last_monitor.items()))
  timer, timer_step = time.time(), step
  start_time = time.time()
  try:
    while step < total_steps:
      batch = next(iterator)
      use_actionlet = config.actionlet.enabled and epoch >= config.actionlet.start_epoch
      state, metrics = steps[use_actionlet](state, to_global(
          {"data": batch["data"], "index": batch["index"]}, batch_sharding))
      pending.append(metrics)
      step += 1
      epoch_done = step % data.steps_per_epoch == 0
      if step % config.log_every_steps == 0 or epoch_done or step == total_steps:
        scalars = _summarize(pending, step - len(pending) + 1)
        for k, v in scalars.items():
          epoch_sums[k] = epoch_sums.get(k, 0.0) + v * len(pending)
        epoch_count += len(pending)
        pending = []
        rate = (step - timer_step) * config.batch_size / (time.time() - timer)
        timer, timer_step = time.time(), step
        scalars.update(samples_per_second=rate, learning_rate=float(schedule(step - 1)),
                       epoch=step / data.steps_per_epoch)
        log.write(step, scalars)
        logging.info(
            "step %d/%d epoch %.2f loss %.4f (infonce %.4f, mining %.4f)%s | %.0f samples/s | "
            "ETA %s", step, total_steps, step / data.steps_per_epoch, scalars["loss"],
            scalars["infonce"], scalars["mining"],
            f" actionlet area {scalars['actionlet_area']:.3f}" if "actionlet_area" in scalars
            else "", rate, _format_eta((total_steps - step) * config.batch_size / max(rate, 1e-9)))
      if epoch_done:
        epoch += 1
        log.write(step, {"epoch_end": epoch, "phase": 2 if use_actionlet else 1,
                         **{f"epoch_{k}": v / epoch_count for k, v in epoch_sums.items()}})
        epoch_sums, epoch_count = {}, 0
        if epoch % config.knn_every_epochs == 0 or step == total_steps:
          last_monitor = monitor(state)
          log.write(step, last_monitor)
          logging.info("epoch %d monitor: %s", epoch,
                       ", ".join(f"{k} {v:.4f}" for k, v in last_monitor.items()))
        # The next epoch's iterator exists before the save, so that a checkpoint at an
        # epoch boundary (the last one included) resumes into the right epoch.
        iterator = iter(pipeline.train_loader(
            data.train, global_batch_size=config.batch_size, epoch=epoch, seed=config.seed,
            stream=config.data.stream, layout=data.layout, shard=data.shard,
            worker_count=config.data.worker_count))
        if epoch % config.checkpoint_every_epochs == 0 or step == total_steps:
          manager.save(step, args=ocp.args.Composite(
              state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))
        timer, timer_step = time.time(), step  # samples/s and ETA count training only
  finally:
    manager.wait_until_finished()
    log.close()
  summary = {"step": step, "epochs": config.num_epochs,
             "wall_seconds": time.time() - start_time, **last_monitor,
             **{f"untrained_{k}": v for k, v in first_monitor.items()}}
  if jax.process_index() == 0:
    summary["per_epoch"] = epoch_table(os.path.join(workdir, "metrics.jsonl"))
    with open(os.path.join(workdir, "pretrain_summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    print(format_summary(summary), flush=True)
  return summary


def epoch_table(metrics_path: str) -> list[dict]:
  """One row per epoch (0: before training) from metrics.jsonl: the epoch's mean loss terms and
  phase, and the monitor's values when it ran. A step logged twice (a resumed run) keeps its
  last record."""
  by_step = {}
  with open(metrics_path) as f:
    for line in f:
      record = json.loads(line)
      by_step.setdefault(record["step"], {}).update(record)
  rows = {}
  for step_, record in sorted(by_step.items()):
    epoch = int(record["epoch_end"]) if "epoch_end" in record else (0 if step_ == 0 else None)
    if epoch is None:
      continue
    keep = {k: v for k, v in record.items()
            if k in ("phase", "knn_top1_k20", "knn_standardized_top1_k20", "actionlet_iou",
                     "random_mask_iou", "feature_effective_rank")
            or k.startswith("epoch_")}
    rows.setdefault(epoch, {"epoch": epoch}).update(keep)
  return [rows[e] for e in sorted(rows)]


def format_summary(summary: dict) -> str:
  """The run's result as a short table: per epoch the loss, KNN and actionlet IoU, then the
  untrained network against the trained one."""
  rows = summary.get("per_epoch", [])
  has_iou = any("actionlet_iou" in r for r in rows)
  head = "epoch | phase | loss    | infonce | mining  | KNN k=20 | KNN std. | eff. rank"
  head += " | actionlet IoU | same-area random IoU" if has_iou else ""
  lines = ["", f"pretraining finished: {summary['step']} steps in {summary['wall_seconds']:.0f} s",
           head]
  cell = lambda r, k, fmt: (fmt % r[k]) if k in r else "-".rjust(len(fmt % 0.0))
  for r in rows:
    line = (f"{r['epoch']:5d} | {('-' if 'phase' not in r else r['phase']):>5} | "
            f"{cell(r, 'epoch_loss', '%7.4f')} | {cell(r, 'epoch_infonce', '%7.4f')} | "
            f"{cell(r, 'epoch_mining', '%7.4f')} | {cell(r, 'knn_top1_k20', '%8.2f')} | "
            f"{cell(r, 'knn_standardized_top1_k20', '%8.2f')} | "
            f"{cell(r, 'feature_effective_rank', '%9.1f')}")
    if has_iou:
      line += (f" | {cell(r, 'actionlet_iou', '%13.3f')} | "
               f"{cell(r, 'random_mask_iou', '%20.3f')}")
    lines.append(line)
  for key, name in (("knn_top1_k20", "KNN k=20"),
                    ("knn_standardized_top1_k20", "KNN k=20, standardised features")):
    if f"untrained_{key}" in summary and key in summary:
      lines.append(f"{name}: untrained {summary[f'untrained_{key}']:.2f} -> trained "
                   f"{summary[key]:.2f}")
  if "untrained_actionlet_iou" in summary and "actionlet_iou" in summary:
    lines.append(f"actionlet IoU: untrained {summary['untrained_actionlet_iou']:.3f} -> trained "
                 f"{summary['actionlet_iou']:.3f} (same-area random mask "
                 f"{summary['random_mask_iou']:.3f})")
  return "\n".join(lines)


def _summarize(pending: list, first_step: int) -> dict:
  """Means of the pending step metrics; raises on a non-finite loss, naming the step."""
  fetched = jax.device_get(pending)
  finite = np.array([m["finite"] for m in fetched])
  if not finite.all():
    bad = first_step + int(np.argmin(finite))
    raise FloatingPointError(
        f"non-finite loss at step {bad}: training stopped; the last good checkpoint is kept")
  keys = fetched[0].keys()
  return {k: float(np.mean([m[k] for m in fetched])) for k in keys if k != "finite"}
