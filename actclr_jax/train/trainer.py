"""The pretraining loop: data, sharding, the step, logging, the monitor, checkpoints and
preemption."""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from actclr_jax import config_checks, parallel, schedules
from actclr_jax.data import io, pipeline
from actclr_jax.evaluate import monitor as monitor_lib
from actclr_jax.models import builder
from actclr_jax.train import checkpoints
from actclr_jax.train import state as state_lib
from actclr_jax.train import step as step_lib
from actclr_jax.train import summary as summary_lib


def jit_train_steps(config, model, tx, layout, mesh: Mesh, class_of_sample=None) -> dict:
  """The MoCo (False) and ActCLR (True) steps, jitted once each, each with its offline momentum
  (state.ema_transform): replicated state, batch sharded on its leading axis over the mesh,
  state donated. class_of_sample: (N_train,) labels for the diagnostic metrics of
  config key log_class_split, or None."""
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  if class_of_sample is not None:
    class_of_sample = jax.device_put(np.asarray(class_of_sample, np.int32), replicated)
  return {flag: jax.jit(step_lib.make_train_step(config, model, tx,
                                                 state_lib.ema_transform(config, flag), layout,
                                                 flag, class_of_sample),
                        in_shardings=(replicated, batch_sharding),
                        out_shardings=(replicated, replicated), donate_argnums=0)
          for flag in (False, True)}


class MetricsLog:
  """Writes scalars to TensorBoard and to workdir/metrics.jsonl (process 0 only).

  A resumed run first drops the records after the step it resumes from, which the interrupted
  run wrote but did not checkpoint, so that metrics.jsonl never holds a step twice.
  """

  def __init__(self, workdir: str, resume_step: int | None):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      path = os.path.join(workdir, "metrics.jsonl")
      _drop_records_after(path, -1 if resume_step is None else resume_step)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(path, "a")

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


def _drop_records_after(path: str, step: int) -> None:
  """Rewrites metrics.jsonl without the records of steps > step (atomically); a torn last
  line, from a kill mid-write, is dropped too."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if record.get("step", 0) <= step:
        kept.append(json.dumps(record) + "\n")
  with io.atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.writelines(kept)


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _log_scalars(step: int, total_steps: int, steps_per_epoch: int, scalars: dict,
                 rate: float, batch_size: int) -> None:
  logging.info(
      "step %d/%d epoch %.2f loss %.4f (infonce %.4f, mining %.4f)%s | %.0f samples/s | ETA %s",
      step, total_steps, step / steps_per_epoch, scalars["loss"], scalars["infonce"],
      scalars["mining"],
      f" actionlet area {scalars['actionlet_area']:.3f}" if "actionlet_area" in scalars else "",
      rate, _format_eta((total_steps - step) * batch_size / max(rate, 1e-9)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains ActCLR as configured, resuming from the newest readable checkpoint in
  workdir/checkpoints. Stops early, after saving, on SIGTERM. Returns the run's summary."""
  config_checks.validate_config(config)
  data = pipeline.load_data(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  mesh = parallel.make_mesh()
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  model = builder.build_model(config)
  tx = state_lib.build_optimizer(config, data.steps_per_epoch)
  schedule = schedules.pretraining(config, data.steps_per_epoch)
  spe = data.steps_per_epoch
  total_steps = config.num_epochs * spe
  init = lambda anchor: state_lib.create_train_state(config, model, tx, anchor, config.seed)
  make_iterator = lambda epoch: iter(pipeline.train_loader(
      data.train, global_batch_size=config.batch_size, epoch=epoch, seed=config.seed,
      stream=config.data.stream, layout=data.layout, shard=data.shard,
      worker_count=config.data.worker_count))

  checkpointer = checkpoints.Checkpointer(workdir, config)
  abstract = jax.eval_shape(init, np.zeros(data.train.data.shape[1:], np.float32))
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                          abstract)
  restored = checkpointer.restore_latest(abstract, make_iterator, spe)
  if restored is None:
    anchor = pipeline.mean_sequence(data.train, stream=config.data.stream, layout=data.layout)
    state = parallel.replicate(init(anchor), replicated)
    step, iterator, progress = 0, make_iterator(0), {}
    # Step 0 is the randomly initialised network: the baseline every protocol can evaluate
    # (pretrain with --config.num_epochs=0 to get it alone).
    checkpointer.save(0, state, iterator, progress)
  else:
    step, state, iterator, progress = restored
    logging.info("resumed from %s at step %d (epoch %.2f)", checkpointer.directory, step,
                 step / spe)
  epoch = step // spe
  epoch_sums = dict(progress.get("epoch_sums", {}))
  epoch_count = int(progress.get("epoch_count", 0))

  n_params = sum(x.size for x in jax.tree.leaves(state.params["encoder"]))
  logging.info("encoder parameters: %d (%.3f M); %d devices; %d steps/epoch; %d epochs",
               n_params, n_params / 1e6, jax.device_count(), spe, config.num_epochs)
  steps = jit_train_steps(config, model, tx, data.layout, mesh,
                          data.train.labels if config.log_class_split else None)
  log = MetricsLog(workdir, resume_step=None if restored is None else step)
  monitor = monitor_lib.Monitor(config, model, data, batch_sharding)
  pending, last_monitor, preempted = [], {}, False
  if step == 0 and config.knn_at_start and config.knn_every_epochs:
    # The untrained encoder's KNN is the baseline that pretraining must beat.
    last_monitor = monitor(state, recalibrate=config.knn_recalibrated_at_ends)
    log.write(0, last_monitor)
    logging.info("before training: %s", ", ".join(f"{k} {v:.4f}" for k, v in last_monitor.items()))
  timer, timer_step = time.time(), step
  start_time = time.time()

  def flush_pending():
    """Logs the mean of the steps since the last log line and adds it to the epoch's sums."""
    nonlocal pending, epoch_count, timer, timer_step
    if not pending:
      return
    scalars = _summarize(pending, step - len(pending) + 1)
    for k, v in scalars.items():
      epoch_sums[k] = epoch_sums.get(k, 0.0) + v * len(pending)
    epoch_count += len(pending)
    pending = []
    rate = (step - timer_step) * config.batch_size / max(time.time() - timer, 1e-9)
    timer, timer_step = time.time(), step
    scalars.update(samples_per_second=rate, learning_rate=float(schedule(step - 1)),
                   epoch=step / spe)
    log.write(step, scalars)
    _log_scalars(step, total_steps, spe, scalars, rate, config.batch_size)

  try:
    with checkpoints.Preemption() as preemption:
      while step < total_steps:
        batch = next(iterator)
        use_actionlet = config.actionlet.enabled and epoch >= config.actionlet.start_epoch
        if (use_actionlet and config.actionlet.reset_bank
            and step == config.actionlet.start_epoch * spe):
          # The phase-1 keys came from another key function (GAP of another view): phase 2
          # starts from the initial random bank instead (README, "A fresh bank at the switch").
          state = state.replace(**parallel.replicate(state_lib.initial_bank(config, config.seed),
                                                     replicated))
        state, metrics = steps[use_actionlet](state, parallel.to_global(
            {"data": batch["data"], "index": batch["index"]}, batch_sharding))
        pending.append(metrics)
        step += 1
        epoch_done = step % spe == 0
        every = config.checkpoint_every_steps
        save = bool(every) and step % every == 0
        preempted = preemption.reached(step)
        if step % config.log_every_steps == 0 or epoch_done or save or preempted:
          flush_pending()
        if epoch_done:
          epoch += 1
          log.write(step, {"epoch_end": epoch, "phase": 2 if use_actionlet else 1,
                           **{f"epoch_{k}": v / epoch_count for k, v in epoch_sums.items()}})
          epoch_sums, epoch_count = {}, 0
          last = step == total_steps
          with_knn = config.knn_between_ends or last
          if config.knn_every_epochs and (epoch % config.knn_every_epochs == 0 or last) and (
              with_knn or monitor.has_truth):
            last_monitor = monitor(state, recalibrate=config.knn_recalibrated_at_ends and last,
                                   with_knn=with_knn)
            log.write(step, last_monitor)
            logging.info("epoch %d monitor: %s", epoch,
                         ", ".join(f"{k} {v:.4f}" for k, v in last_monitor.items()))
          # The next epoch's iterator exists before the save, so that a checkpoint at an
          # epoch boundary (the last one included) resumes into the right epoch.
          iterator = make_iterator(epoch)
          save = save or epoch % config.checkpoint_every_epochs == 0 or step == total_steps
          timer, timer_step = time.time(), step  # samples/s and ETA count training only
        if save or preempted:
          checkpointer.save(step, state, iterator,
                            {"epoch_sums": epoch_sums, "epoch_count": epoch_count})
        if preempted:
          checkpointer.wait()
          logging.warning("SIGTERM: saved step %d to %s; stopping (run again to resume)", step,
                          checkpointer.directory)
          break
  finally:
    checkpointer.close()
    log.close()
  summary = {"step": step, "epochs": config.num_epochs, "preempted": preempted,
             "wall_seconds": time.time() - start_time, **last_monitor}
  if jax.process_index() == 0:
    summary.update(summary_lib.from_metrics(os.path.join(workdir, "metrics.jsonl"), summary))
    with open(os.path.join(workdir, "pretrain_summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    print(summary_lib.format_summary(summary), flush=True)
  return summary


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
