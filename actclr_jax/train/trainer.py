"""The pretraining loop: data, sharding, checkpoints, logging and the KNN monitor."""

from __future__ import annotations

import json
import os
import time

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from actclr_jax import config_checks, parallel, schedules
from actclr_jax.data import pipeline
from actclr_jax.evaluate import monitor as monitor_lib
from actclr_jax.models import builder
from actclr_jax.train import state as state_lib
from actclr_jax.train import step as step_lib


def jit_train_steps(config, model, tx, ema_tx, layout, mesh: Mesh) -> dict:
  """The MoCo (False) and ActCLR (True) steps, jitted once each: replicated state, batch
  sharded on its leading axis over the mesh, state donated."""
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  return {flag: jax.jit(step_lib.make_train_step(config, model, tx, ema_tx, layout, flag),
                        in_shardings=(replicated, batch_sharding),
                        out_shardings=(replicated, replicated), donate_argnums=0)
          for flag in (False, True)}


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


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains ActCLR as configured, resuming from workdir/checkpoints. Returns the last monitor."""
  config_checks.validate_config(config)
  data = pipeline.load_data(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  mesh = parallel.make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  model = builder.build_model(config)
  tx = state_lib.build_optimizer(config, data.steps_per_epoch)
  ema_tx = state_lib.ema_transform(config)
  schedule = schedules.pretraining(config, data.steps_per_epoch)
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
  monitor = monitor_lib.Monitor(config, model, data, batch_sharding)
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
      state, metrics = steps[use_actionlet](state, parallel.to_global(
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
