"""The evaluation protocols (main.py --mode) on one tiny pretraining run: outputs, restored
params, learning signal on synthetic data, figures and the bad-input errors."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from actclr_jax.data import io
from actclr_jax.evaluate import protocols, semi
from actclr_jax.models import builder
from actclr_jax.train import trainer
from tests.conftest import eval_config, restore_params

CHANCE = 100.0 / 12


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic")
  workdir = tmp_path_factory.mktemp("pretrain")
  config = eval_config(root)
  trainer.train_and_evaluate(config, str(workdir))
  return config, str(workdir)


def _check_record(workdir, mode, step):
  with open(os.path.join(workdir, "eval", f"{mode}.json")) as f:
    record = json.load(f)
  assert record["mode"] == mode and record["step"] == step
  assert record["config"]["eval"]["knn_ks"] == [10, 20, 40]
  return record["metrics"]


def test_restores_the_saved_params(run_dir):
  config, workdir = run_dir
  step, saved = restore_params(workdir)
  pre = protocols.restore_pretrained(workdir, config)
  assert pre.step == step and pre.path.endswith(os.path.join("checkpoints", str(step)))
  jax.tree.map(np.testing.assert_array_equal, pre.params, jax.tree.map(np.asarray,
                                                                       saved["params"]))
  # The feature vector of a val sample from the restored state equals the saved params'.
  data = protocols.load_eval_data(config)
  model = builder.build_model(config)
  x = np.asarray(data.val.data[:2])
  want = model.apply({"params": saved["params"], "batch_stats": saved["batch_stats"]}, x,
                     train=False)["feature"]
  got = protocols.encoder_features(pre, data.val, data, config)[:2]
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


def test_knn_linear_and_transfer(run_dir, tmp_path):
  config, workdir = run_dir
  step, saved = restore_params(workdir)
  knn = protocols.run("knn", config, workdir)["metrics"]
  assert _check_record(workdir, "knn", step) == knn
  assert knn["feature_dim"] == 32 and knn["top1_k10"] > CHANCE

  # The published protocol on raw features: one epoch of tiny pretraining leaves features
  # that barely vary between samples (std ~1e-3), too little for lr 3.0 to separate in 30
  # epochs, so only ranges are checked; standardised features must beat chance.
  plain = eval_config(config.data.root)
  plain.eval.standardize_features = False
  raw = protocols.run("linear", plain, workdir)["metrics"]
  assert 0.0 <= raw["final_top1"] <= raw["best_top1_over_epochs"] <= 100.0
  linear = protocols.run("linear", config, workdir)["metrics"]
  _check_record(workdir, "linear", step)
  assert linear["best_top1_over_epochs"] >= linear["final_top1"] > 2 * CHANCE
  # The cached features are exactly the saved encoder's.
  cache = np.load(os.path.join(workdir, "eval", f"features_step{step}_synthetic_xsub_joint_t20.npz"))
  model = builder.build_model(config)
  data = protocols.load_eval_data(config)
  want = model.apply({"params": saved["params"], "batch_stats": saved["batch_stats"]},
                     np.asarray(data.val.data[:3]), train=False)["feature"]
  np.testing.assert_allclose(cache["val_x"][:3], np.asarray(want), rtol=1e-5, atol=1e-6)
  logits = np.load(os.path.join(workdir, "eval", "linear_val_logits.npy"))
  assert logits.shape == (len(data.val), 12)

  transfer_config = eval_config(config.data.root)
  transfer_config.eval.source_workdir = workdir
  target = str(tmp_path / "transfer")
  out = protocols.run("transfer", transfer_config, target)
  assert out["checkpoint"].startswith(workdir)
  assert _check_record(target, "transfer", step)["final_top1"] == pytest.approx(
      linear["final_top1"])
  with pytest.raises(ValueError, match="source_workdir"):
    protocols.run("transfer", config, target)


def test_finetune_semi_and_ensemble(run_dir, tmp_path):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  data = protocols.load_eval_data(config)
  for mode in ("finetune", "semi"):
    metrics = protocols.run(mode, config, workdir)["metrics"]
    assert _check_record(workdir, mode, step) == metrics
    assert 0 <= metrics["final_top1"] <= metrics["final_top5"] <= 100
    assert len(metrics["top1_history"]) == 1
    logits = np.load(os.path.join(workdir, "eval", f"{mode}_val_logits.npy"))
    assert logits.shape == (len(data.val), 12) and np.all(np.isfinite(logits))
  counts = np.bincount(data.train.labels)
  assert metrics["labelled_samples"] == sum(semi.per_class_count(int(c), 0.1) for c in counts)
  assert os.path.exists(os.path.join(workdir, "eval", "semi_10pct.json"))

  ensemble_config = eval_config(config.data.root)
  ensemble_config.eval.ensemble_source = "finetune"
  for stream in ("joint", "bone", "motion"):
    ensemble_config.eval.ensemble_workdirs[stream] = workdir
  out = protocols.run("ensemble", ensemble_config, str(tmp_path))["metrics"]
  # Identical logits: the weighted sum has the same argmax as each stream.
  assert out["ensemble_top1"] == out["joint_top1"] == out["motion_top1"]
  ensemble_config.eval.ensemble_source = "nothing"
  with pytest.raises(io.DataError, match="nothing_val_logits.npy: missing"):
    protocols.run("ensemble", ensemble_config, str(tmp_path))


def test_segment(run_dir):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  metrics = protocols.run("segment", config, workdir)["metrics"]
  assert _check_record(workdir, "segment", step) == metrics
  for key in ("acc", "macc", "fwiou", "miou"):
    assert 0.0 <= metrics[key] <= 100.0
  print({k: v for k, v in metrics.items() if isinstance(v, float)})
  # Background (idle frames) is the largest class; the per-frame classifier must do better
  # than predicting it everywhere on the class-balanced metrics.
  assert metrics["macc"] > metrics["majority_macc"]
  assert metrics["miou"] > metrics["majority_miou"]


def test_segment_windows_and_upsampling():
  assert protocols.window_starts(45, 20, 10) == [0, 10, 20, 25]
  assert protocols.window_starts(12, 20, 10) == [0]
  m = protocols.upsample_matrix(20, 5)
  np.testing.assert_allclose(m.sum(1), 1.0)
  np.testing.assert_allclose(m[[0, 4, 8, 16, 19]].argmax(1), [0, 1, 2, 4, 4])
  np.testing.assert_allclose(m[2], [0.5, 0.5, 0, 0, 0])


def test_visualize(run_dir):
  config, workdir = run_dir
  metrics = protocols.run("visualize", config, workdir)["metrics"]
  for name in ("anchor", "val0_actionlet", "val0_mask", "val0_truth", "val1_mask", "val_pca"):
    path = os.path.join(workdir, "figures", name + ".png")
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
  assert 0.0 <= metrics["actionlet_iou"] <= 1.0


def test_bad_inputs(run_dir, tmp_path):
  config, workdir = run_dir
  empty = str(tmp_path / "empty")
  with pytest.raises(io.DataError, match=f"{empty}/checkpoints: no checkpoint"):
    protocols.run("knn", config, empty)

  wide = eval_config(config.data.root)
  wide.model.out_channels = 64
  with pytest.raises(io.DataError, match=r"checkpoints/\d+: checkpoint does not match.*"
                     r"out_channels=64.*checkpoint \(32,\) vs config \(64,\)"):
    protocols.run("knn", wide, workdir)
  msr = eval_config(config.data.root)
  msr.data.layout = "msr"
  with pytest.raises(io.DataError, match=r"data.layout='msr'.*edge_importance: "
                     r"checkpoint \(3, 25, 25\) vs config \(3, 20, 20\)"):
    protocols.run("linear", msr, workdir)

  # A train split without class 3: the val split's class 3 cannot be evaluated.
  root = tmp_path / "root"
  shutil.copytree(os.path.join(config.data.root, "xsub"), root / "xsub")
  names, labels = io.load_labels(str(root / "xsub" / "train_label.pkl"))
  io.save_pickle(str(root / "xsub" / "train_label.pkl"),
                 (names, [4 if l == 3 else int(l) for l in labels]))
  lacking = eval_config(str(root))
  with pytest.raises(io.DataError, match=r"val_data_t20.npy: val class\(es\) \[3\] have no "
                     r"training sample in .*train_data_t20.npy"):
    protocols.run("linear", lacking, workdir)
