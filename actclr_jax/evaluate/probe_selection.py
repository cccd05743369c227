"""A linear probe whose lr and weight decay are chosen by cross-validation on the training set.

  python -m actclr_jax.evaluate.probe_selection --num_classes=20 --batch_size=32 \
    --features=runs/s36/m3_s0/seed0/moco/eval/features_step1440_msr_xsub_joint_t50.npz

A diagnostic, not one of the comparison's protocols: it asks whether the primary probe
(`linear.train_linear` on standardised features, the family's lr and no weight decay) favours
one encoder because it is unregularised. For each cached feature file (the `eval/` .npz of
train_x, train_y, val_x, val_y), every (lr, weight decay) of the grid is scored by k-fold
class-stratified cross-validation on the training features only; the best is retrained on all of
them and scored once on val, beside the default probe. Features are standardised with the
statistics of whatever part a probe trains on. Writes --output (JSON) and prints one line per
file.
"""

from __future__ import annotations

import itertools
import json
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

from actclr_jax.data import io
from actclr_jax.evaluate import linear
from actclr_jax.evaluate.knn import standardize

FLAGS = flags.FLAGS
flags.DEFINE_list("features", None, "Cached feature files (.npz with train_x, train_y, val_x, "
                  "val_y), e.g. a run's eval/features_*.npz.")
flags.DEFINE_integer("num_classes", None, "Number of classes.")
flags.DEFINE_integer("batch_size", 128, "The probe's batch size; the lrs are at this batch.")
flags.DEFINE_list("lrs", ["0.75", "0.075", "0.0075"], "Learning rates of the grid.")
flags.DEFINE_list("weight_decays", ["0", "1e-3", "1e-2", "1e-1"], "Weight decays of the grid.")
flags.DEFINE_float("default_lr", 0.75, "The primary probe's lr at --batch_size (3.0 per 128).")
flags.DEFINE_integer("num_folds", 5, "Cross-validation folds.")
flags.DEFINE_integer("seed", 0, "Seeds the folds and every probe.")
flags.DEFINE_string("output", "probe_selection.json", "Where the results go.")
flags.mark_flags_as_required(["features", "num_classes"])


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int = 0) -> np.ndarray:
  """(N,) fold ids in [0, num_folds): each class's samples shuffled, then dealt round-robin, so
  that every fold holds each class's count / num_folds samples, rounded."""
  labels = np.asarray(labels)
  if num_folds < 2:
    raise ValueError(f"num_folds must be >= 2, got {num_folds}")
  rng = np.random.default_rng(seed)
  fold = np.zeros(len(labels), np.int64)
  for label in np.unique(labels):
    index = rng.permutation(np.flatnonzero(labels == label))
    fold[index] = np.arange(len(index)) % num_folds
  return fold


def probe_top1(train_x, train_y, val_x, val_y, *, num_classes: int, lr: float,
               weight_decay: float, batch_size: int, seed: int = 0, epochs: int = 100) -> float:
  """Final val top-1 (%) of `linear.train_linear` on features standardised with train's
  statistics; (N, C) / (M, C) features, (N,) / (M,) labels."""
  train_x, val_x = standardize(train_x, val_x)
  out = linear.train_linear(train_x, train_y, val_x, val_y, num_classes=num_classes,
                            epochs=epochs, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, seed=seed, log_every=None)
  return float(out["final_top1"])


def cross_validated_probe(train_x, train_y, val_x, val_y, *, num_classes: int,
                          lrs: Sequence[float], weight_decays: Sequence[float],
                          default_lr: float, batch_size: int, num_folds: int = 5,
                          seed: int = 0, epochs: int = 100) -> dict:
  """The default probe's and the cross-validated probe's val top-1 on one encoder's features.

  Returns default_top1, choice ([lr, weight_decay]), cv_top1 (the choice's mean fold
  accuracy), val_top1 (the choice retrained on all training features) and cv_grid
  ({"lr/wd": mean fold accuracy}).
  """
  train_y = np.asarray(train_y)
  fold = stratified_folds(train_y, num_folds, seed)
  kwargs = dict(num_classes=num_classes, batch_size=batch_size, seed=seed, epochs=epochs)
  grid = {}
  for lr, wd in itertools.product(lrs, weight_decays):
    grid[(lr, wd)] = float(np.mean([
        probe_top1(train_x[fold != f], train_y[fold != f], train_x[fold == f],
                   train_y[fold == f], lr=lr, weight_decay=wd, **kwargs)
        for f in range(num_folds)]))
  choice = max(grid, key=grid.get)
  return dict(
      default_top1=probe_top1(train_x, train_y, val_x, val_y, lr=default_lr, weight_decay=0.0,
                              **kwargs),
      choice=list(choice), cv_top1=grid[choice],
      val_top1=probe_top1(train_x, train_y, val_x, val_y, lr=choice[0], weight_decay=choice[1],
                          **kwargs),
      cv_grid={f"{lr}/{wd}": v for (lr, wd), v in grid.items()})


def main(argv):
  del argv
  results = {}
  for path in FLAGS.features:
    try:
      data = np.load(path)
      arrays = [data[k] for k in ("train_x", "train_y", "val_x", "val_y")]
    except (OSError, KeyError) as e:
      raise ValueError(f"{path}: not a feature cache with train_x, train_y, val_x, val_y "
                       f"({e})") from e
    results[path] = out = cross_validated_probe(
        *arrays, num_classes=FLAGS.num_classes, lrs=[float(v) for v in FLAGS.lrs],
        weight_decays=[float(v) for v in FLAGS.weight_decays], default_lr=FLAGS.default_lr,
        batch_size=FLAGS.batch_size, num_folds=FLAGS.num_folds, seed=FLAGS.seed)
    print(f"{path}: default probe {out['default_top1']:.2f}, cross-validated "
          f"{out['val_top1']:.2f} (lr {out['choice'][0]}, wd {out['choice'][1]}, "
          f"CV {out['cv_top1']:.2f})", flush=True)
  with io.atomic_path(FLAGS.output) as tmp, open(tmp, "w") as f:
    json.dump(results, f, indent=1)
  logging.info("wrote %s", FLAGS.output)


if __name__ == "__main__":
  app.run(main)
