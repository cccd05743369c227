"""What frozen features encode besides the action.

  python -m actclr_jax.evaluate.nuisance --config=configs/synthetic.py --workdir=runs/synthetic

For the latest checkpoint of --workdir (pretrain with --config.num_epochs=0 for the untrained
network), on the encoder's features standardised by the training split's statistics: the R^2 on
the val split of a ridge regression, fitted on the train split, of each nuisance attribute; the
share of variance of the leading principal directions and their correlation with each attribute;
and, for scale, the val top-1 of the same ridge regression onto one-hot labels. Writes
workdir/eval/nuisance.json.

The attributes come from the preprocessed joints (N, 3, T, V, M):
  second_body  1 where any body beyond the first is present, else 0;
  speed        the mean joint speed of body 0 (distance per frame);
  height       body 0's vertical extent (y range over joints), averaged over frames.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
import numpy as np
from ml_collections import config_flags

from actclr_jax import logs
from actclr_jax.evaluate import features, knn, pretrained

ATTRIBUTES = ("second_body", "speed", "height")


def nuisance_attributes(x: np.ndarray) -> dict[str, np.ndarray]:
  """{name: (N,)} for each of ATTRIBUTES, from joints x (N, 3, T, V, M)."""
  x = np.asarray(x, np.float64)
  actor = x[..., 0]
  second = np.any(x[..., 1:] != 0, axis=(1, 2, 3, 4)).astype(np.float64)
  speed = np.linalg.norm(np.diff(actor, axis=2), axis=1).mean(axis=(1, 2))
  height = (actor[:, 1].max(axis=-1) - actor[:, 1].min(axis=-1)).mean(axis=-1)
  return {"second_body": second, "speed": speed, "height": height}


def ridge_fit(train_x: np.ndarray, targets: np.ndarray, l2: float = 10.0) -> np.ndarray:
  """Weights (D + 1, K) of ridge regression of targets (N, K) on train_x (N, D), with an
  unpenalised intercept (the last row)."""
  mean_x, mean_y = train_x.mean(0), targets.mean(0)
  xc = train_x - mean_x
  w = np.linalg.solve(xc.T @ xc + l2 * np.eye(xc.shape[1]), xc.T @ (targets - mean_y))
  return np.vstack([w, mean_y - mean_x @ w])


def ridge_predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
  return x @ weights[:-1] + weights[-1]


def r2(prediction: np.ndarray, target: np.ndarray) -> float:
  """Coefficient of determination: 1 - MSE / Var(target); 0 for a constant target."""
  var = np.var(target)
  return 0.0 if var == 0 else float(1.0 - np.mean((prediction - target) ** 2) / var)


def report(train_x: np.ndarray, val_x: np.ndarray, train_joints: np.ndarray,
           val_joints: np.ndarray, train_labels: np.ndarray, val_labels: np.ndarray,
           num_classes: int, num_directions: int = 3) -> dict:
  """The module's numbers for features (N, D) / (M, D) of the splits whose joints and labels
  are given. Features are standardised by train_x's statistics first."""
  train_x, val_x = (np.asarray(a, np.float64) for a in knn.standardize(train_x, val_x))
  train_a, val_a = nuisance_attributes(train_joints), nuisance_attributes(val_joints)
  result = {"r2": {}}
  for name in ATTRIBUTES:
    w = ridge_fit(train_x, train_a[name][:, None])
    result["r2"][name] = r2(ridge_predict(w, val_x)[:, 0], val_a[name])
  centred = train_x - train_x.mean(0)
  _, singular, directions = np.linalg.svd(centred, full_matrices=False)
  energy = singular ** 2 / np.sum(singular ** 2)
  projections = centred @ directions[:num_directions].T
  result["directions"] = [
      {"variance_share": float(energy[i]),
       "correlation": {name: float(np.corrcoef(projections[:, i], train_a[name])[0, 1])
                       for name in ATTRIBUTES if np.std(train_a[name]) > 0}}
      for i in range(min(num_directions, len(energy)))]
  w = ridge_fit(train_x, np.eye(num_classes)[np.asarray(train_labels)])
  result["ridge_top1"] = float(100.0 * np.mean(
      ridge_predict(w, val_x).argmax(1) == np.asarray(val_labels)))
  return result


def format_report(result: dict) -> str:
  lines = ["ridge R^2 on val: " + ", ".join(f"{k} {v:.3f}" for k, v in result["r2"].items()),
           f"ridge top-1 on val (labels): {result['ridge_top1']:.2f}"]
  for i, d in enumerate(result["directions"]):
    corr = ", ".join(f"{k} {v:+.2f}" for k, v in d["correlation"].items())
    lines.append(f"principal direction {i}: {100 * d['variance_share']:.1f}% of the variance; "
                 f"correlation with {corr}")
  return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags() -> None:
  # Defined when run as a script only: importing the module (tests, other tools that define
  # their own --workdir and --config) must not register flags.
  flags.DEFINE_string("workdir", None, "Pretraining workdir whose latest checkpoint is probed.")
  config_flags.DEFINE_config_file("config", None, "Config the workdir was pretrained with.",
                                  lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  config = FLAGS.config
  data = features.load_eval_data(config)
  pre = pretrained.restore(FLAGS.workdir, config)
  train_x = features.encoder_features(pre, data.train, data, config)
  val_x = features.encoder_features(pre, data.val, data, config)
  result = report(train_x, val_x, np.asarray(data.train.data), np.asarray(data.val.data),
                  data.train.labels, data.val.labels, config.data.num_classes)
  result["checkpoint"] = pre.path
  path = os.path.join(FLAGS.workdir, "eval", "nuisance.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
  os.replace(path + ".tmp", path)
  print(f"{pre.path} (step {pre.step}):\n{format_report(result)}\nwrote {path}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
