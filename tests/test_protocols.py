"""The evaluators (main.py --mode) on one tiny pretraining run: one test per protocol, each
checking a property that a wrong result fails (accuracy above chance by a margin, saved logits
that reproduce the reported metric, agreement between code paths, a constructed case), plus the
bad-input errors."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from actclr_jax import parallel
from actclr_jax.data import io, untrimmed
from actclr_jax.evaluate import (evaluators, features, geometry, metrics, monitor, pretrained,
                                 segment, semi)
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
  assert record["config"]["eval"]["knn"]["ks"] == [10, 20, 40]
  return record["metrics"]


def _saved_logits_reproduce(workdir, mode, metrics_, labels, top1_key="final_top1"):
  """The saved val logits are the ones the reported top-1 / top-5 were computed from."""
  logits = np.load(os.path.join(workdir, "eval", f"{mode}_val_logits.npy"))
  saved_labels = np.load(os.path.join(workdir, "eval", f"{mode}_val_labels.npy"))
  np.testing.assert_array_equal(saved_labels, labels)
  assert logits.shape == (len(labels), 12) and np.all(np.isfinite(logits))
  assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(metrics_[top1_key])
  assert metrics.topk_accuracy(logits, labels, 5) == pytest.approx(metrics_["final_top5"])


def _with(config, **fields):
  copy = eval_config(config.data.root)
  copy.update_from_flattened_dict(fields)
  return copy


def test_restores_the_saved_params(run_dir):
  config, workdir = run_dir
  step, saved = restore_params(workdir)
  pre = pretrained.restore(workdir, config)
  assert pre.step == step and pre.path.endswith(os.path.join("checkpoints", str(step)))
  jax.tree.map(np.testing.assert_array_equal, pre.params, jax.tree.map(np.asarray,
                                                                       saved["params"]))
  # The feature vector of a val sample from the restored state equals the saved params'.
  data = features.load_eval_data(config)
  model = builder.build_model(config)
  x = np.asarray(data.val.data[:2])
  want = model.apply({"params": saved["params"], "batch_stats": saved["batch_stats"]}, x,
                     train=False)["feature"]
  got = features.encoder_features(pre, data.val, data, config)[:2]
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)
  # The evaluators read the whole state as numpy, leaf for leaf the trainer's saved arrays.
  state, _, _ = pretrained.restore_state(workdir, config)
  assert jax.tree.structure(state) == jax.tree.structure(saved)
  for got_leaf, saved_leaf in zip(jax.tree.leaves(state), jax.tree.leaves(saved)):
    assert isinstance(got_leaf, np.ndarray) and got_leaf.dtype == saved_leaf.dtype
    np.testing.assert_array_equal(got_leaf, np.asarray(saved_leaf))


def test_a_foreign_checkpoint_is_named(run_dir, tmp_path):
  """A readable checkpoint without the pretraining state's params / ema_state fails with one
  DataError naming its path."""
  config, _ = run_dir
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
  manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave({"w": np.ones(3)})))
  manager.wait_until_finished()
  with pytest.raises(io.DataError, match=r"checkpoints/3: not an ActCLR pretraining checkpoint"):
    pretrained.restore(str(tmp_path), config)


def test_knn_and_the_monitor_share_one_path(run_dir):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  knn = evaluators.run("knn", config, workdir)["metrics"]
  assert _check_record(workdir, "knn", step) == knn
  assert knn["feature_dim"] == 32 and knn["standardize_features"]
  assert knn["top1_k10"] > 3 * CHANCE  # measured 46.7
  # The pretraining monitor on the restored state reports the same numbers under its keys.
  data = features.load_eval_data(config)
  pre = pretrained.restore(workdir, config)
  watched = monitor.Monitor(config, builder.build_model(config), data,
                            parallel.local_batch_sharding())(pre)
  for k in (10, 20, 40):
    assert watched[f"knn_standardized_top1_k{k}"] == pytest.approx(knn[f"top1_k{k}"])
  raw = evaluators.run("knn", _with(config, **{"eval.features.standardize": False}),
                       workdir)["metrics"]
  for k in (10, 20, 40):
    assert watched[f"knn_top1_k{k}"] == pytest.approx(raw[f"top1_k{k}"])


def test_the_monitor_without_knn_scores_the_actionlet_alone(run_dir, monkeypatch):
  """with_knn=False (the trainer's points between the ends under knn_between_ends=False): the
  same actionlet entries as a full monitor, no KNN key, no feature extracted; nothing at all
  where the data set has no ground-truth actionlet."""
  config, workdir = run_dir
  data = features.load_eval_data(config)
  state = pretrained.restore(workdir, config)
  watched = monitor.Monitor(config, builder.build_model(config), data,
                            parallel.local_batch_sharding())
  full = watched(state)

  def no_features(*args, **kwargs):
    raise AssertionError("the monitor extracted features with with_knn=False")

  monkeypatch.setattr(features, "extract_features", no_features)
  assert watched.has_truth
  assert watched(state, with_knn=False) == {
      k: v for k, v in full.items() if k.startswith("actionlet_") or k == "random_mask_iou"}
  no_truth = dataclasses.replace(data, val=dataclasses.replace(data.val, actionlet=None))
  blind = monitor.Monitor(config, builder.build_model(config), no_truth,
                          parallel.local_batch_sharding())
  assert not blind.has_truth and blind(state, with_knn=False) == {}


def test_the_offline_network_is_evaluated_on_request(run_dir):
  config, workdir = run_dir
  step, saved = restore_params(workdir)
  offline_config = _with(config, **{"eval.features.network": "offline"})
  pre = pretrained.restore(workdir, offline_config)
  # The evaluated slots hold the momentum network; the actionlet's slots are untouched.
  jax.tree.map(np.testing.assert_array_equal, pre.params,
               jax.tree.map(np.asarray, saved["ema_state"]["ema"]))
  jax.tree.map(np.testing.assert_array_equal, pre.batch_stats,
               jax.tree.map(np.asarray, saved["ema_batch_stats"]))
  jax.tree.map(np.testing.assert_array_equal, pre.ema_params, pre.params)
  online = pretrained.restore(workdir, config)
  assert not np.array_equal(online.params["encoder"]["data_bn"]["scale"],
                            pre.params["encoder"]["data_bn"]["scale"])
  data = features.load_eval_data(config)
  model = builder.build_model(config)
  x = np.asarray(data.val.data[:2])
  want = model.apply({"params": saved["ema_state"]["ema"], "batch_stats": saved["ema_batch_stats"]},
                     x, train=False)["feature"]
  got = features.encoder_features(pre, data.val, data, config)[:2]
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)
  # The knn evaluator and the monitor read the same network; its features get their own cache.
  knn = evaluators.run("knn", offline_config, workdir)["metrics"]
  watched = monitor.Monitor(offline_config, model, data, parallel.local_batch_sharding())(
      pretrained.restore(workdir, config))
  for k in (10, 20, 40):
    assert watched[f"knn_standardized_top1_k{k}"] == pytest.approx(knn[f"top1_k{k}"])
  assert features._cache_tag(offline_config) == features._cache_tag(config) + "_offline"
  with pytest.raises(ValueError, match="eval.features.network='ema'"):
    evaluators.run("knn", _with(config, **{"eval.features.network": "ema"}), workdir)


def test_linear(run_dir):
  config, workdir = run_dir
  step, saved = restore_params(workdir)
  data = features.load_eval_data(config)
  linear = evaluators.run("linear", config, workdir)["metrics"]
  assert _check_record(workdir, "linear", step) == linear
  assert linear["final_top1"] > 4 * CHANCE  # measured 66.7
  assert linear["best_top1_over_epochs"] == max(linear["top1_history"])
  assert linear["top1_history"][linear["best_epoch"] - 1] == linear["best_top1_over_epochs"]
  _saved_logits_reproduce(workdir, "linear", linear, data.val.labels)
  # The cached features are exactly the saved encoder's.
  cache = np.load(os.path.join(workdir, "eval",
                               f"features_step{step}_synthetic_xsub_joint_t20.npz"))
  model = builder.build_model(config)
  want = model.apply({"params": saved["params"], "batch_stats": saved["batch_stats"]},
                     np.asarray(data.val.data[:3]), train=False)["feature"]
  np.testing.assert_allclose(cache["val_x"][:3], np.asarray(want), rtol=1e-5, atol=1e-6)
  # The published protocol on raw features: one epoch of tiny pretraining leaves features that
  # barely vary between samples (std ~1e-3), too little for lr 3.0 to separate in 30 epochs;
  # standardising them is what makes the probe learn.
  raw = evaluators.run("linear", _with(config, **{"eval.features.standardize": False}),
                       workdir)["metrics"]
  assert not raw["standardize_features"]
  assert linear["final_top1"] > raw["final_top1"] + 20.0  # measured 66.7 vs 3.7


def test_transfer(run_dir, tmp_path):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  linear = evaluators.run("linear", config, workdir)["metrics"]
  target = str(tmp_path / "transfer")
  out = evaluators.run("transfer", _with(config, **{"eval.transfer.source_workdir": workdir}),
                       target)
  assert out["checkpoint"].startswith(workdir)
  transfer = _check_record(target, "transfer", step)
  # The same encoder and data as `linear`: the same numbers, written to the target workdir.
  assert transfer["final_top1"] == pytest.approx(linear["final_top1"])
  assert transfer["top1_history"] == pytest.approx(linear["top1_history"])
  _saved_logits_reproduce(target, "transfer", transfer,
                          features.load_eval_data(config).val.labels)
  with pytest.raises(ValueError, match="eval.transfer.source_workdir"):
    evaluators.run("transfer", config, target)


def test_finetune(run_dir):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  data = features.load_eval_data(config)
  out = evaluators.run("finetune", config, workdir)["metrics"]
  assert _check_record(workdir, "finetune", step) == out
  assert len(out["top1_history"]) == len(out["loss_history"]) == 1
  assert out["batch_size"] == 12
  # One tiny epoch does not beat chance (measured 10.4%; 8.1% after 6): the check is that the
  # reported numbers are those of the saved logits.
  _saved_logits_reproduce(workdir, "finetune", out, data.val.labels)
  assert np.isfinite(out["loss_history"][0])


def test_semi(run_dir):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  data = features.load_eval_data(config)
  out = evaluators.run("semi", config, workdir)["metrics"]
  assert _check_record(workdir, "semi", step) == out
  counts = np.bincount(data.train.labels)
  assert out["labelled_samples"] == sum(semi.per_class_count(int(c), 0.1) for c in counts)
  assert out["labelled_samples"] < len(data.train)
  with open(os.path.join(workdir, "eval", "semi_10pct.json")) as f:
    assert json.load(f)["metrics"] == out
  _saved_logits_reproduce(workdir, "semi", out, data.val.labels)


def test_ensemble(tmp_path):
  """Three streams, each wrong on a different third of the samples, with the wrong class
  scored 1 by that stream alone: each stream scores 2/3, their 0.6/0.6/0.4 sum gets every
  sample right."""
  labels = np.arange(9) % 3
  config = eval_config(tmp_path / "unused")
  config.eval.ensemble.source = "finetune"
  for s, stream in enumerate(("joint", "bone", "motion")):
    logits = np.eye(3, dtype=np.float32)[labels]
    wrong = np.arange(9) % 3 == s
    logits[wrong] = np.eye(3, dtype=np.float32)[(labels[wrong] + 1) % 3]
    stream_dir = tmp_path / stream
    io.save_npy(str(stream_dir / "eval" / "finetune_val_logits.npy"), logits)
    io.save_npy(str(stream_dir / "eval" / "finetune_val_labels.npy"), labels)
    config.eval.ensemble.workdirs[stream] = str(stream_dir)
  out = evaluators.run("ensemble", config, str(tmp_path / "ensemble"))["metrics"]
  for stream in ("joint", "bone", "motion"):
    assert out[f"{stream}_top1"] == pytest.approx(200 / 3)
  assert out["ensemble_top1"] == pytest.approx(100.0)
  # With the motion stream weighted above the other two, its mistakes win.
  config.eval.ensemble.weights.motion = 2.0
  out = evaluators.run("ensemble", config, str(tmp_path / "ensemble"))["metrics"]
  assert out["ensemble_top1"] == pytest.approx(200 / 3)

  config.eval.ensemble.source = "nothing"
  with pytest.raises(io.DataError, match="nothing_val_logits.npy: missing"):
    evaluators.run("ensemble", config, str(tmp_path / "ensemble"))
  config.eval.ensemble.source = "finetune"
  io.save_npy(str(tmp_path / "bone" / "eval" / "finetune_val_labels.npy"), labels[::-1].copy())
  with pytest.raises(io.DataError, match="val labels differ"):
    evaluators.run("ensemble", config, str(tmp_path / "ensemble"))


def test_segment(run_dir):
  config, workdir = run_dir
  step, _ = restore_params(workdir)
  out = evaluators.run("segment", config, workdir)["metrics"]
  assert _check_record(workdir, "segment", step) == out
  ev = config.eval.segment
  sequences = untrimmed.synthetic_untrimmed(
      ev.synthetic_sequences, ev.synthetic_actions, clip_frames=ev.synthetic_clip_frames,
      seed=config.data.synthetic_seed + 2, subjects="even")
  labels = np.concatenate([l for _, l in sequences])
  assert out["val_frames"] == len(labels)
  assert out["background_fraction"] == pytest.approx(np.mean(labels == untrimmed.BACKGROUND))
  # Background (idle frames) is the largest class; the per-frame classifier must do better
  # than predicting it everywhere on the class-balanced metrics.
  assert out["macc"] > out["majority_macc"] + 3.0  # measured 15.0 vs 8.3
  assert out["miou"] > out["majority_miou"] + 2.0  # measured 8.3 vs 3.4


def test_segment_windows_and_upsampling():
  assert segment.window_starts(45, 20, 10) == [0, 10, 20, 25]
  assert segment.window_starts(12, 20, 10) == [0]
  m = segment.upsample_matrix(20, 5)
  np.testing.assert_allclose(m.sum(1), 1.0)
  np.testing.assert_allclose(m[[0, 4, 8, 16, 19]].argmax(1), [0, 1, 2, 4, 4])
  np.testing.assert_allclose(m[2], [0.5, 0.5, 0, 0, 0])


def test_visualize(run_dir):
  config, workdir = run_dir
  out = evaluators.run("visualize", config, workdir)["metrics"]
  for name in ("anchor", "val0_actionlet", "val0_mask", "val0_truth", "val1_mask", "val_pca"):
    path = os.path.join(workdir, "figures", name + ".png")
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
  # The drawn actionlets are the offline network's, as the monitor computes them.
  data = features.load_eval_data(config)
  n = config.eval.visualize.samples
  watched = monitor.Monitor(config, builder.build_model(config), data,
                            parallel.local_batch_sharding(), max_actionlet_samples=n)
  pre = pretrained.restore(workdir, config)
  assert out["actionlet_iou"] == pytest.approx(watched.actionlet_iou(pre)["actionlet_iou"])
  assert 0.0 < out["actionlet_area"] < 1.0


def test_geometry_measures_every_checkpoint(run_dir):
  """One record per checkpoint, in geometry.json; the offline network's SAFP feature is the
  actionlet-weighted mean, so its norm is positive; equal networks agree exactly, and training
  leaves the online network apart from its average; a missing step names the checkpoint path."""
  config, workdir = run_dir
  steps = pretrained.checkpoint_steps(workdir)
  records = geometry.measure(workdir, config, batches=2)
  assert [r["step"] for r in records] == steps and steps
  with open(os.path.join(workdir, "eval", "geometry.json")) as f:
    assert json.load(f) == records
  for r in records:
    for key in ("val_encoder_pairwise", "val_projector_pairwise", "offline_z_gap_pairwise",
                "offline_z_safp_pairwise", "bank_same", "bank_other"):
      assert r[key] is None if key.startswith("bank") and r["step"] == 0 else -1 <= r[key] <= 1
    assert r["offline_safp_norm"] > 0 and r["offline_gap_norm"] > 0
    assert -1 <= r["online_offline_cosine"] <= 1
  # Training leaves the online network ahead of its moving average; equal networks agree.
  assert records[-1]["online_offline_cosine"] < 1 - 1e-4
  state, _, _ = pretrained.restore_state(workdir, config, steps[-1])
  online = {"params": state["params"], "batch_stats": state["batch_stats"]}
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3, config.data.frames, 25, 2)),
                  jnp.float32)
  np.testing.assert_allclose(geometry.online_offline_cosine(
      online, online, x, model=builder.build_model(config)), 1.0, rtol=1e-5)
  with pytest.raises(io.DataError, match=r"checkpoints/12345: no such checkpoint"):
    pretrained.restore_state(workdir, config, 12345)


def test_bad_inputs(run_dir, tmp_path):
  config, workdir = run_dir
  empty = str(tmp_path / "empty")
  with pytest.raises(io.DataError, match=f"{empty}/checkpoints: no checkpoint"):
    evaluators.run("knn", config, empty)
  with pytest.raises(ValueError, match="Unknown evaluation mode 'nope'"):
    evaluators.run("nope", config, workdir)

  wide = eval_config(config.data.root)
  wide.model.out_channels = 64
  with pytest.raises(io.DataError, match=r"checkpoints/\d+: checkpoint does not match.*"
                     r"out_channels=64.*checkpoint \(32,\) vs config \(64,\)"):
    evaluators.run("knn", wide, workdir)
  msr = eval_config(config.data.root)
  msr.data.layout = "msr"
  with pytest.raises(io.DataError, match=r"data.layout='msr'.*edge_importance: "
                     r"checkpoint \(3, 25, 25\) vs config \(3, 20, 20\)"):
    evaluators.run("linear", msr, workdir)
  with pytest.raises(ValueError, match="eval.knn.feature='pooled'"):
    evaluators.run("knn", _with(config, **{"eval.knn.feature": "pooled"}), workdir)

  # A train split without class 3: the val split's class 3 cannot be evaluated.
  root = tmp_path / "root"
  shutil.copytree(os.path.join(config.data.root, "xsub"), root / "xsub")
  names, labels = io.load_labels(str(root / "xsub" / "train_label.pkl"))
  io.save_pickle(str(root / "xsub" / "train_label.pkl"),
                 (names, [4 if l == 3 else int(l) for l in labels]))
  lacking = eval_config(str(root))
  with pytest.raises(io.DataError, match=r"val_data_t20.npy: val class\(es\) \[3\] have no "
                     r"training sample in .*train_data_t20.npy"):
    evaluators.run("linear", lacking, workdir)
