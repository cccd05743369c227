"""The evaluators of a pretrained encoder and their registry: one per `--mode` of main.py.

  knn        weighted KNN on frozen features (config group eval.knn); `Knn.accuracy` is also
             what the pretraining monitor (monitor.py) reports every few epochs
  linear     a linear probe on cached frozen features (eval.linear)
  transfer   the linear probe of another run's encoder (eval.transfer.source_workdir)
  finetune   the whole network with a new head (eval.finetune)
  semi       finetune on a per-class fraction of the labels (eval.semi)
  ensemble   0.6 joint + 0.6 bone + 0.4 motion of three runs' saved val logits (ensemble.py)
  segment    a per-frame classifier on untrimmed sequences (segment.py)
  visualize  figures of the anchor, actionlets and features (figures.py)

Each evaluator restores the latest pretraining state of its workdir (pretrained.py) and writes
`{workdir}/eval/{mode}.json` (base.py). Learning rates in the config are per 128 samples and
scaled linearly with the batch size.
"""

from __future__ import annotations

import dataclasses
import time

import ml_collections
import numpy as np

from actclr_jax import config_checks, schedules
from actclr_jax.data import pipeline
from actclr_jax.evaluate import (base, classifier, ensemble, features, figures, knn, linear,
                                 pretrained, segment, semi)


class Knn(base.Evaluator):
  """Weighted KNN (config group eval.knn) of val on train features of the frozen encoder."""

  name = "knn"

  def accuracy(self, config, train_x: np.ndarray, val_x: np.ndarray, data: pipeline.Data, *,
               standardize: bool) -> dict[str, float]:
    """{'top1_k{k}': top-1 in %} for every k of eval.knn.ks, of val_x (M, D) against train_x
    (N, D) labelled by data.train, on features standardised by train_x's statistics when
    `standardize` is set."""
    if standardize:
      train_x, val_x = knn.standardize(train_x, val_x)
    accuracy = knn.knn_accuracy(train_x, data.train.labels, val_x, data.val.labels,
                                ks=tuple(config.eval.knn.ks),
                                temperature=config.eval.knn.temperature,
                                num_classes=config.data.num_classes)
    return {f"top1_k{k}": float(v) for k, v in accuracy.items()}

  def run(self, config, workdir: str) -> dict:
    start = time.time()
    data = features.load_eval_data(config)
    pre = features.recalibrated(pretrained.restore(workdir, config), data, config)
    feature = config.eval.knn.feature
    train_x = features.encoder_features(pre, data.train, data, config, feature)
    val_x = features.encoder_features(pre, data.val, data, config, feature)
    result = self.accuracy(config, train_x, val_x, data,
                           standardize=config.eval.features.standardize)
    result.update(feature=feature, feature_dim=int(train_x.shape[1]),
                  bn_recalibration=bool(config.eval.features.bn_recalibration),
                  standardize_features=bool(config.eval.features.standardize),
                  chance=100.0 / config.data.num_classes)
    return self.finish(config, workdir, pre.step, pre.path, result, start)


class Linear(base.Evaluator):
  """A linear probe (config group eval.linear) on the cached features of the workdir's
  encoder."""

  name = "linear"

  def source(self, config, workdir: str) -> str:
    """The workdir whose encoder is evaluated."""
    return workdir

  def probe_inputs(self, config, workdir: str):
    """(restored encoder, cached features {train_x, train_y, val_x, val_y} as the probe sees
    them, seconds spent on the features)."""
    pre = pretrained.restore(self.source(config, workdir), config)
    data = features.load_eval_data(config)
    pre = features.recalibrated(pre, data, config)
    feature_start = time.time()
    f = features.cached_features(pre, data, config, workdir)
    feature_seconds = time.time() - feature_start
    train_x, val_x = features.standardized(config, f["train_x"], f["val_x"])
    inputs = {"train_x": train_x, "train_y": f["train_y"], "val_x": val_x, "val_y": f["val_y"]}
    return pre, inputs, feature_seconds

  @staticmethod
  def probe(config, inputs: dict, seed: int, **kwargs) -> dict:
    """`linear.train_linear` on probe_inputs' features with config group eval.linear; `seed`
    sets the probe's init and shuffling."""
    ev = config.eval.linear
    batch = min(ev.batch_size, len(inputs["train_x"]))
    return linear.train_linear(
        inputs["train_x"], inputs["train_y"], inputs["val_x"], inputs["val_y"],
        num_classes=config.data.num_classes, epochs=ev.epochs, batch_size=batch,
        lr=schedules.scaled_lr(ev.lr, batch), weight_decay=ev.weight_decay,
        decay_epochs=tuple(ev.decay_epochs), seed=seed, lr_key="config key eval.linear.lr",
        **kwargs)

  def run(self, config, workdir: str) -> dict:
    start = time.time()
    pre, inputs, feature_seconds = self.probe_inputs(config, workdir)
    out = self.probe(config, inputs, config.seed)
    self.save_logits(workdir, out["val_logits"], inputs["val_y"])
    result = {"final_top1": out["final_top1"], "final_top5": out["final_top5"],
              "best_top1_over_epochs": out["best_top1"], "best_epoch": out["best_epoch"],
              "top5_at_best_epoch": out["top5_at_best"], "feature_seconds": feature_seconds,
              "train_seconds": out["seconds"], "top1_history": out["top1_history"],
              "bn_recalibration": bool(config.eval.features.bn_recalibration),
              "standardize_features": bool(config.eval.features.standardize),
              "chance": 100.0 / config.data.num_classes}
    return self.finish(config, workdir, pre.step, pre.path, result, start)


class Transfer(Linear):
  """The linear probe, on this config's data, of the encoder pretrained in
  eval.transfer.source_workdir (e.g. NTU-60 -> PKU-MMD)."""

  name = "transfer"

  def source(self, config, workdir: str) -> str:
    del workdir
    if not config.eval.transfer.source_workdir:
      raise ValueError("transfer needs the pretraining run to evaluate: set "
                       "--config.eval.transfer.source_workdir=PATH (the workdir of e.g. an "
                       "NTU-60 run)")
    return config.eval.transfer.source_workdir


class Finetune(base.Evaluator):
  """The whole network with a new linear head (classifier.finetune, config group
  eval.finetune) on every training label."""

  name = "finetune"

  def train_split(self, config, train: pipeline.SplitArrays):
    """(the labelled training split, extra metrics)."""
    del config
    return train, {}

  def run(self, config, workdir: str) -> dict:
    start = time.time()
    pre = pretrained.restore(workdir, config)
    data = features.load_eval_data(config)
    train, extra = self.train_split(config, data.train)
    out = classifier.finetune(pre, data, train, config)
    self.save_logits(workdir, out.pop("val_logits"), data.val.labels)
    out.update(extra, chance=100.0 / config.data.num_classes)
    aliases = (f"semi_{100 * extra['fraction']:g}pct",) if "fraction" in extra else ()
    return self.finish(config, workdir, pre.step, pre.path, out, start, aliases)


class Semi(Finetune):
  """Finetuning on eval.semi.fraction of the labels, sampled per class with eval.semi.seed;
  also writes eval/semi_<pct>pct.json."""

  name = "semi"

  def train_split(self, config, train: pipeline.SplitArrays):
    ev = config.eval.semi
    index = semi.sample_per_class(train.labels, ev.fraction, ev.seed)
    subset = dataclasses.replace(
        train, data=np.asarray(train.data[index]), labels=np.asarray(train.labels)[index],
        names=[train.names[i] for i in index], actionlet=None)
    return subset, {"fraction": float(ev.fraction), "labelled_samples": int(len(index)),
                    "semi_seed": int(ev.seed)}


EVALUATORS: dict[str, base.Evaluator] = {e.name: e for e in (
    Knn(), Linear(), Finetune(), Semi(), Transfer(), ensemble.Ensemble(), segment.Segment(),
    figures.Visualize())}
MODES = tuple(EVALUATORS)


def get(mode: str) -> base.Evaluator:
  """The registered evaluator of `mode`."""
  if mode not in EVALUATORS:
    raise ValueError(f"Unknown evaluation mode {mode!r}: expected one of {MODES}")
  return EVALUATORS[mode]


def run(mode: str, config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs evaluator `mode` and returns the record it wrote to `{workdir}/eval/{mode}.json`."""
  evaluator = get(mode)
  config_checks.validate_config(config)
  return evaluator.run(config, workdir)
