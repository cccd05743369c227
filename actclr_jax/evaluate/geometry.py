"""Where a run's features and keys lie, checkpoint by checkpoint: how narrow a cone they fill.

  python -m actclr_jax.evaluate.geometry --config=configs/synthetic.py --workdir=runs/synthetic

For each checkpoint of --workdir (or --steps), three measures:
  bank      the mean cosine between the memory bank's keys of the same class (keys of other
            samples) and of other classes, from the training labels of the samples the keys
            came from: the negatives InfoNCE saw;
  val       the mean pairwise cosine of the online network's encoder features and projections of
            the val split (inference mode, clean inputs);
  offline   on the first --batches clean training batches of config.batch_size, the offline
            network in train mode as in the step: the mean norm of its GAP feature and of its
            SAFP feature (Eq. 8, with the actionlet it computes), and the mean pairwise cosine of
            their projections within each batch (as the step's key_similarity), and the mean
            cosine between the online and the offline network's projections of the same
            input (both in train mode, the same dropout mask): how closely the online network
            follows its moving average.
Writes workdir/eval/geometry.json.
"""

from __future__ import annotations

import functools
import json
import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_flags

from actclr_jax import actionlet, augment, graph, logs, losses
from actclr_jax.data import pipeline
from actclr_jax.evaluate import features, pretrained
from actclr_jax.models import builder, stgcn


def _group_sums(x: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(sum of the rows of (K, D) x per distinct value of group (K,), each group's size)."""
  _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
  sums = np.zeros((len(counts), x.shape[1]))
  np.add.at(sums, inverse, x)
  return sums, counts


def mean_pairwise_cosine(x: np.ndarray) -> float:
  """Mean cosine over the distinct pairs of the rows of (N, D) x, N >= 2."""
  return float(losses.pairwise_similarity(losses.l2_normalize(jnp.asarray(x, jnp.float32))))


def bank_class_similarity(bank: np.ndarray, bank_index: np.ndarray,
                          labels: np.ndarray) -> dict[str, float | None]:
  """Mean cosine of (K, D) unit bank keys between keys of the same class from different
  samples ('same') and keys of different classes ('other'); rows with index -1 (the initial
  random keys) are left out; None where no pair exists (the bank of step 0). labels: (N,)
  training labels, indexed by bank_index.

  Sums of dot products over groups are squared norms of group sums, so this runs in O(K D)
  memory (a 32,768-key bank included): same-class pairs minus same-sample pairs, and all pairs
  minus same-class pairs.
  """
  filled = bank_index >= 0
  keys, index = np.asarray(bank, np.float64)[filled], np.asarray(bank_index)[filled]
  if not len(index):
    return {"same": None, "other": None}
  label = np.asarray(labels)[index]
  class_sums, class_sizes = _group_sums(keys, label)
  sample_sums, sample_sizes = _group_sums(keys, index)
  within_class = np.sum(class_sums ** 2)
  same_dot = within_class - np.sum(sample_sums ** 2)
  same_count = np.sum(class_sizes ** 2) - np.sum(sample_sizes ** 2)
  other_dot = np.sum(keys.sum(axis=0) ** 2) - within_class
  other_count = len(index) ** 2 - np.sum(class_sizes ** 2)
  mean = lambda dot, count: float(dot / count) if count else None
  return {"same": mean(same_dot, same_count), "other": mean(other_dot, other_count)}


def offline_pooled(variables: dict, anchor: jax.Array, x: jax.Array, *,
                   config: ml_collections.ConfigDict, model: stgcn.ContrastiveNet,
                   layout: graph.Layout) -> dict[str, jax.Array]:
  """The offline network's GAP and SAFP features (N, C) of clean x (N, C, T, V, M), in train
  mode with the (C, T, V, M) anchor in the batch as in the step, and their projections (N, D).
  variables: the offline network's {'params', 'batch_stats'}."""
  inputs = jnp.concatenate([x, anchor[None]])
  out, _ = model.apply(variables, inputs, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(0)})
  n = x.shape[0]
  mask_dense, _ = actionlet.offline_actionlet(config, model, variables, out["dense"][:n],
                                              out["z"][n], layout, x.shape[2],
                                              augment.body_presence(x))
  safp = stgcn.weighted_pool(out["dense"][:n], mask_dense)
  return {"gap": out["feature"][:n], "safp": safp, "z_gap": out["z"][:n],
          "z_safp": model.apply(variables, safp, method=model.project)}


def online_offline_cosine(online: dict, offline: dict, x: jax.Array, *,
                          model: stgcn.ContrastiveNet) -> jax.Array:
  """Per sample, the cosine between the online and the offline network's projections (N,) of
  clean x (N, C, T, V, M), both in train mode on x alone with the same dropout key; 1 where the
  two networks are equal. online, offline: {'params', 'batch_stats'}."""
  project = lambda variables: model.apply(variables, x, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": jax.random.key(0)})[0]["z"]
  return jnp.sum(losses.l2_normalize(project(online)) * losses.l2_normalize(project(offline)),
                 axis=-1)


def checkpoint_geometry(state: dict, data: pipeline.Data, config: ml_collections.ConfigDict,
                        batches: int, model: stgcn.ContrastiveNet, pooled,
                        agreement) -> dict[str, float]:
  """The three measures of the module docstring for one restored pretraining state; pooled is
  offline_pooled jitted with config, model and layout bound, agreement online_offline_cosine
  with model bound (one program each for every checkpoint)."""
  online = pretrained.Pretrained.from_state(state)
  result = {f"bank_{k}": v for k, v in bank_class_similarity(
      state["bank"], state["bank_index"], data.train.labels).items()}
  for kind in ("encoder", "projector"):
    val = features.encoder_features(online, data.val, data, config, kind)
    result[f"val_{kind}_pairwise"] = mean_pairwise_cosine(val)
  offline = {"params": state["ema_state"]["ema"], "batch_stats": state["ema_batch_stats"]}
  rows, cosines = [], []
  for batch in pipeline.eval_batches(data.train, batch_size=config.batch_size,
                                     stream=config.data.stream, layout=data.layout):
    if len(rows) == batches or not batch["mask"].all():  # whole batches only, as in training
      break
    x = jnp.asarray(batch["data"])
    out = jax.device_get(pooled(offline, state["anchor"], x))
    cosines.append(jax.device_get(agreement(online.variables, offline, x)))
    rows.append({"gap_norm": np.linalg.norm(out["gap"], axis=1).mean(),
                 "safp_norm": np.linalg.norm(out["safp"], axis=1).mean(),
                 "z_gap_pairwise": mean_pairwise_cosine(out["z_gap"]),
                 "z_safp_pairwise": mean_pairwise_cosine(out["z_safp"])})
  if not rows:
    raise ValueError(f"config key batch_size={config.batch_size} exceeds the "
                     f"{len(data.train.labels)} training samples: no batch to measure the "
                     "offline network on")
  result.update({f"offline_{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]})
  result["online_offline_cosine"] = float(np.mean(np.concatenate(cosines)))
  return result


def format_line(step: int, epoch: float, r: dict) -> str:
  """One checkpoint's measures on one line."""
  bank = lambda v: "    -" if v is None else f"{v:.3f}"
  return (f"step {step:6d} (epoch {epoch:6.2f}) | bank same {bank(r['bank_same'])} other "
          f"{bank(r['bank_other'])} | val encoder {r['val_encoder_pairwise']:.3f} projector "
          f"{r['val_projector_pairwise']:.3f} | offline |GAP| {r['offline_gap_norm']:.2f} "
          f"|SAFP| {r['offline_safp_norm']:.2f} z pairwise GAP {r['offline_z_gap_pairwise']:.3f} "
          f"SAFP {r['offline_z_safp_pairwise']:.3f} | online-offline "
          f"{r['online_offline_cosine']:.3f}")


FLAGS = flags.FLAGS


def _define_flags() -> None:
  # Defined when run as a script only, as in nuisance.py.
  flags.DEFINE_string("workdir", None, "Pretraining workdir whose checkpoints are measured.")
  config_flags.DEFINE_config_file("config", None, "Config the workdir was pretrained with.",
                                  lock_config=True)
  flags.DEFINE_list("steps", [], "Checkpoint steps to measure (default: all of them).")
  flags.DEFINE_integer("batches", 8, "Training batches for the offline network's measures.")
  flags.mark_flags_as_required(["config", "workdir"])


def measure(workdir: str, config: ml_collections.ConfigDict, steps: list[int] | None = None,
            batches: int = 8) -> list[dict]:
  """One record per checkpoint (all when steps is None); prints a line for each and writes
  workdir/eval/geometry.json."""
  data = features.load_eval_data(config)
  steps = steps or pretrained.checkpoint_steps(workdir)
  per_epoch = pipeline.steps_per_epoch(len(data.train.labels), config.batch_size)
  model = builder.build_model(config)
  pooled = jax.jit(functools.partial(offline_pooled, config=config, model=model,
                                     layout=data.layout))
  agreement = jax.jit(functools.partial(online_offline_cosine, model=model))
  records = []
  for step in steps:
    state, path, step = pretrained.restore_state(workdir, config, step)
    record = {"step": step, "epoch": step / per_epoch, "checkpoint": path,
              **checkpoint_geometry(state, data, config, batches, model, pooled, agreement)}
    print(format_line(step, record["epoch"], record), flush=True)
    records.append(record)
  out = os.path.join(workdir, "eval", "geometry.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".tmp", "w") as f:
    json.dump(records, f, indent=1)
  os.replace(out + ".tmp", out)
  return records


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  measure(FLAGS.workdir, FLAGS.config, [int(s) for s in FLAGS.steps] or None, FLAGS.batches)
  print(f"wrote {os.path.join(FLAGS.workdir, 'eval', 'geometry.json')}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
