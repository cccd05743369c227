"""Tests for the array-level evaluation blocks: kNN, the classifier loop and the linear probe,
metrics, semi, ensemble, the nuisance probe."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from actclr_jax import schedules
from actclr_jax.evaluate import (classifier, ensemble, geometry, knn, linear, metrics, nuisance,
                                 probe_selection, semi)


def _blobs(rng, centers, n, noise):
  labels = rng.integers(0, len(centers), n)
  x = centers[labels] + noise * rng.normal(size=(n, centers.shape[1]))
  return x.astype(np.float32), labels


# ----------------------------------------------------------------------------- kNN


def test_knn_separated_clusters_near_perfect():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(5, 32)) * 5
  train_x, train_y = _blobs(rng, centers, 400, 0.5)
  test_x, test_y = _blobs(rng, centers, 150, 0.5)
  acc = knn.knn_accuracy(train_x, train_y, test_x, test_y, ks=(10, 20, 40), chunk_size=64)
  assert set(acc) == {10, 20, 40}
  for value in acc.values():
    assert value == pytest.approx(100.0)


def test_knn_random_labels_near_chance():
  rng = np.random.default_rng(1)
  train_x = rng.normal(size=(600, 16)).astype(np.float32)
  test_x = rng.normal(size=(600, 16)).astype(np.float32)
  train_y, test_y = rng.integers(0, 4, 600), rng.integers(0, 4, 600)
  acc = knn.knn_accuracy(train_x, train_y, test_x, test_y, ks=(20,), num_classes=4)
  assert 15.0 < acc[20] < 35.0  # chance is 25%, std ~1.8%


def test_knn_hand_computed_weighted_vote():
  # Train points on the unit circle; the test point is at angle 0 (x axis).
  angles = np.array([0.1, 0.2, 0.3, 2.0, 2.5])
  train_x = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1], [3], [2], [5], [1]])
  train_y = np.array([0, 1, 1, 2, 2])
  test_x = np.array([[4.0, 0.0]])  # norms do not matter: cosine on normalised features
  sims = np.cos(angles)  # 0.995, 0.980, 0.955, -0.416, -0.801
  w = np.exp(sims / 0.1)
  # k=1: the nearest is class 0.
  assert knn.knn_predict(train_x, train_y, test_x, k=1)[0] == 0
  # k=2: class 0 gets w0, class 1 gets w1 < w0 -> 0. k=3: class 1 gets w1 + w2 > w0 -> 1.
  assert w[0] > w[1] and w[1] + w[2] > w[0]
  preds = knn.knn_predict_multi(train_x, train_y, test_x, ks=(2, 3), temperature=0.1)
  assert preds[2][0] == 0 and preds[3][0] == 1
  # k=5 adds the two far class-2 points, whose weights are tiny at T=0.1.
  assert w[1] + w[2] > w[3] + w[4]
  assert knn.knn_predict(train_x, train_y, test_x, k=5, temperature=0.1)[0] == 1
  # At T=100 the weights are nearly equal, so votes are ~counts (class 1: 2.01,
  # class 2: 1.99, class 0: 1.01); the exact weighted scores decide.
  scores = np.zeros(3)
  np.add.at(scores, train_y, np.exp(sims / 100.0))
  assert scores.argmax() == 1 and scores[2] > scores[0]
  assert knn.knn_predict(train_x, train_y, test_x, k=5, temperature=100.0)[0] == 1
  # Relabelling the 0.3 point as class 2 gives class 2 three votes: it wins on counts
  # (T=100), but at T=0.1 the single nearest point outweighs them (w0 > w2 + w3 + w4).
  relabelled = np.array([0, 1, 2, 2, 2])
  assert w[0] > w[2] + w[3] + w[4] and w[0] > w[1]
  assert knn.knn_predict(train_x, relabelled, test_x, k=5, temperature=100.0)[0] == 2
  assert knn.knn_predict(train_x, relabelled, test_x, k=5, temperature=0.1)[0] == 0


def test_knn_k_above_train_size_and_chunking_consistent():
  rng = np.random.default_rng(2)
  train_x = rng.normal(size=(30, 8)).astype(np.float32)
  train_y = rng.integers(0, 3, 30)
  test_x = rng.normal(size=(37, 8)).astype(np.float32)
  a = knn.knn_predict_multi(train_x, train_y, test_x, ks=(5, 30, 100), chunk_size=10)
  b = knn.knn_predict_multi(train_x, train_y, test_x, ks=(5, 30, 100), chunk_size=1024)
  for k in (5, 30, 100):
    np.testing.assert_array_equal(a[k], b[k])
    assert a[k].shape == (37,)
  np.testing.assert_array_equal(a[30], a[100])  # k is clipped to N_train


def test_knn_rejects_bad_input():
  x = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match="feature sizes"):
    knn.knn_predict(x, np.zeros(4), np.ones((2, 5)))
  with pytest.raises(ValueError, match="NaN"):
    knn.knn_predict(x, np.zeros(4), np.full((2, 3), np.nan))


# ---------------------------------------------------------------------- classifier


@pytest.mark.parametrize("weight_decay,nesterov", [(0.0, False), (1e-2, True)])
def test_train_step_is_optax_sgd_with_the_schedule(weight_decay, nesterov):
  """train_step(sgd(...)) at lr = schedule(step) takes the steps of optax.sgd(schedule)."""
  rng = np.random.default_rng(0)
  target = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  loss_fn = lambda p, b, batch, r: (jnp.sum((p["w"] * batch - target) ** 2), b)
  schedule = schedules.step_decay(0.05, (2,), steps_per_epoch=2)
  reference = optax.sgd(schedule, momentum=0.9, nesterov=nesterov)
  if weight_decay:
    reference = optax.chain(optax.add_decayed_weights(weight_decay), reference)
  tx = classifier.sgd(weight_decay, momentum=0.9, nesterov=nesterov)
  step = jax.jit(classifier.train_step(loss_fn, tx))
  params = want = {"w": jnp.ones((4, 3), jnp.float32)}
  state, ref_state = tx.init(params), reference.init(want)
  for i in range(6):
    batch = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    params, _, state, _ = step(params, None, state, batch, None, jnp.float32(schedule(i)))
    grads = jax.grad(lambda p: loss_fn(p, None, batch, None)[0])(want)
    updates, ref_state = reference.update(grads, ref_state, want)
    want = optax.apply_updates(want, updates)
  np.testing.assert_allclose(params["w"], want["w"], rtol=1e-6, atol=1e-7)


def test_fit_tracks_best_and_final_and_names_the_lr_key_on_divergence():
  labels = np.array([0, 1, 2, 0])
  # Epoch e's classifier gets the first (e mod 4) samples right (0, 1, 2, 3, 0 correct).
  wrong = np.eye(3)[(labels + 1) % 3]
  right = np.eye(3)[labels]
  predict = lambda e: np.where(np.arange(4)[:, None] < e % 4, right, wrong)
  seen = []
  out = classifier.fit(0, lambda e, epoch, lrs: (e + 1, float(lrs.sum())), predict, labels,
                       epochs=5, lr=1.0, decay_epochs=(3,), steps_per_epoch=2, name="toy",
                       lr_key="config key toy.lr", keep_best_state=True,
                       callback=lambda e, r: seen.append(r["lr"]))
  assert out["top1_history"] == [25.0, 50.0, 75.0, 0.0, 25.0]
  assert out["best_top1"] == 75.0 and out["best_epoch"] == 3 and out["best_state"] == 3
  assert out["final_top1"] == 25.0 and out["state"] == 5
  assert out["loss_history"] == pytest.approx([2.0, 2.0, 2.0, 0.2, 0.2])  # sum of 2 lrs
  assert seen == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])
  with pytest.raises(FloatingPointError, match="toy diverged in epoch 1.*config key toy.lr"):
    classifier.fit(0, lambda e, epoch, lrs: (e, float("nan")), predict, labels, epochs=2,
                   lr=1.0, decay_epochs=(), steps_per_epoch=1, name="toy",
                   lr_key="config key toy.lr")


# -------------------------------------------------------------------------- linear


def test_linear_separable_blobs_reach_100():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(10, 256)) / np.sqrt(256) * 4
  train_x, train_y = _blobs(rng, centers, 1000, 0.3 / np.sqrt(256) * 4)
  val_x, val_y = _blobs(rng, centers, 300, 0.3 / np.sqrt(256) * 4)
  seen = []
  result = linear.train_linear(train_x, train_y, val_x, val_y, num_classes=10, epochs=12,
                               batch_size=128, decay_epochs=(8,), log_every=None,
                               callback=lambda e, r: seen.append((e, r["lr"])))
  assert result["final_top1"] == pytest.approx(100.0)
  assert result["final_top5"] == pytest.approx(100.0)
  assert len(result["top1_history"]) == len(result["loss_history"]) == 12
  assert result["loss_history"][-1] < result["loss_history"][0]
  assert result["val_logits"].shape == (300, 10)
  assert result["steps_per_epoch"] == 8  # 1000 / 128 -> 7 full + 1 partial batch
  assert [e for e, _ in seen] == list(range(1, 13))
  # x0.1 from the first step of epoch 8 (0-based), i.e. the 9th epoch.
  assert [lr for _, lr in seen] == pytest.approx([3.0] * 8 + [0.3] * 4)
  # The stored params reproduce the final logits.
  np.testing.assert_allclose(linear.predict_logits(result["params"], val_x),
                             result["val_logits"], rtol=1e-5, atol=1e-5)


def test_linear_best_vs_final_reported_separately():
  rng = np.random.default_rng(3)
  centers = rng.normal(size=(6, 32))
  train_x, train_y = _blobs(rng, centers, 200, 1.5)
  val_x, val_y = _blobs(rng, centers, 200, 1.5)
  # A large lr makes val accuracy fluctuate, so best and final can differ.
  result = linear.train_linear(train_x, train_y, val_x, val_y, num_classes=6, epochs=10,
                               batch_size=32, lr=5.0, decay_epochs=(), log_every=None)
  history = result["top1_history"]
  assert result["best_top1"] == max(history)
  assert history[result["best_epoch"] - 1] == result["best_top1"]
  assert result["best_epoch"] == 1 + int(np.argmax(history))  # the first best epoch
  assert result["final_top1"] == history[-1]
  assert result["top5_at_best"] == result["top5_history"][result["best_epoch"] - 1]
  assert metrics.topk_accuracy(result["best_val_logits"], val_y, 1) == result["best_top1"]
  assert metrics.topk_accuracy(result["val_logits"], val_y, 1) == result["final_top1"]


def test_linear_partial_batch_counts_every_sample():
  index, mask = linear._epoch_batches(np.random.default_rng(0), 10, 4)
  assert index.shape == mask.shape == (3, 4)
  assert mask.sum() == 10
  np.testing.assert_array_equal(np.sort(index[mask > 0]), np.arange(10))


def test_linear_deterministic_for_seed_and_rejects_bad_labels():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(50, 8)).astype(np.float32)
  y = rng.integers(0, 3, 50)
  kwargs = dict(num_classes=3, epochs=2, batch_size=16, lr=0.1, log_every=None)
  a = linear.train_linear(x, y, x, y, seed=1, **kwargs)
  b = linear.train_linear(x, y, x, y, seed=1, **kwargs)
  np.testing.assert_array_equal(a["val_logits"], b["val_logits"])
  with pytest.raises(ValueError, match="class ids"):
    linear.train_linear(x, y + 3, x, y, **kwargs)


# ------------------------------------------------------------------------- metrics


def test_topk_accuracy_hand_computed():
  logits = np.array([[0.1, 0.5, 0.4],
                     [0.9, 0.05, 0.05],
                     [0.2, 0.3, 0.5],
                     [0.0, 0.0, 0.0]])
  labels = np.array([2, 0, 0, 1])
  # Ranks of the true class: 1, 0, 2, 1 (ties go to the lower class id).
  assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(25.0)
  assert metrics.topk_accuracy(logits, labels, 2) == pytest.approx(75.0)
  assert metrics.topk_accuracy(logits, labels, 3) == pytest.approx(100.0)
  assert metrics.topk_accuracy(np.zeros((3, 4)), [0, 1, 2], 1) == pytest.approx(100 / 3)


def test_segmentation_metrics_hand_computed():
  # 10 frames, 4 classes; class 3 is never in the labels but predicted once.
  label = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
  pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
  cm = metrics.confusion_matrix(pred, label, 4)
  np.testing.assert_array_equal(cm, [[3, 1, 0, 0],
                                     [0, 2, 1, 0],
                                     [0, 0, 2, 1],
                                     [0, 0, 0, 0]])
  # TP = 3, 2, 2, 0; label counts 4, 3, 3, 0; prediction counts 3, 3, 3, 1.
  # IoU: 3/(4+3-3)=3/4, 2/(3+3-2)=1/2, 2/(3+3-2)=1/2, 0/(0+1-0)=0.
  out = metrics.segmentation_metrics(pred, label, 4)
  assert out["acc"] == pytest.approx(70.0)
  assert out["macc"] == pytest.approx(100 * (3 / 4 + 2 / 3 + 2 / 3) / 3)
  assert out["miou"] == pytest.approx(100 * (0.75 + 0.5 + 0.5 + 0.0) / 4)
  assert out["fwiou"] == pytest.approx(100 * (0.4 * 0.75 + 0.3 * 0.5 + 0.3 * 0.5))


def test_segmentation_metrics_ignore_index_and_absent_classes():
  label = np.array([0, 0, 5, 1, 5])
  pred = np.array([0, 1, 0, 1, 1])
  out = metrics.segmentation_metrics(pred, label, num_classes=3, ignore_index=5)
  # Kept frames: labels 0, 0, 1; preds 0, 1, 1. Class 2 never appears: left out of means.
  assert out["acc"] == pytest.approx(100 * 2 / 3)
  assert out["macc"] == pytest.approx(100 * (0.5 + 1.0) / 2)
  assert out["miou"] == pytest.approx(100 * (1 / 2 + 1 / 2) / 2)
  assert out["fwiou"] == pytest.approx(100 * (2 / 3 * 0.5 + 1 / 3 * 0.5))
  perfect = metrics.segmentation_metrics(label[label != 5], label[label != 5], 3)
  assert all(v == pytest.approx(100.0) for v in perfect.values())
  with pytest.raises(ValueError, match="class ids"):
    metrics.segmentation_metrics(pred, label, num_classes=3)  # 5 not ignored


# ---------------------------------------------------------------------------- semi


def test_sample_per_class_counts_and_determinism():
  labels = np.repeat(np.arange(4), [100, 37, 5, 250])
  rng = np.random.default_rng(0)
  labels = labels[rng.permutation(len(labels))]
  idx = semi.sample_per_class(labels, 0.1, seed=0)
  counts = np.bincount(labels[idx], minlength=4)
  np.testing.assert_array_equal(counts, [10, 4, 1, 25])  # 3.7 -> 4, 0.5 -> 1, 25
  assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
  np.testing.assert_array_equal(idx, semi.sample_per_class(labels, 0.1, seed=0))
  assert not np.array_equal(idx, semi.sample_per_class(labels, 0.1, seed=1))
  one = semi.sample_per_class(labels, 0.01, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[one], minlength=4), [1, 1, 1, 3])
  assert len(semi.sample_per_class(labels, 1.0, seed=0)) == len(labels)
  with pytest.raises(ValueError):
    semi.sample_per_class(labels, 0.0, seed=0)


# ------------------------------------------------------------------------ ensemble


def test_ensemble_weights_applied():
  eye = np.eye(3, dtype=np.float32)
  logits = {"joint": eye[[0, 1]], "bone": eye[[0, 2]], "motion": eye[[1, 2]]}
  out = ensemble.ensemble_logits(logits)
  np.testing.assert_allclose(out, [[1.2, 0.4, 0.0], [0.0, 0.6, 1.0]], rtol=1e-6)
  custom = ensemble.ensemble_logits({"joint": eye, "bone": 2 * eye}, {"joint": 1.0, "bone": 0.5})
  np.testing.assert_allclose(custom, 2 * eye)
  report = ensemble.ensemble_report(logits, [0, 2])
  assert report == {"joint": 50.0, "bone": 100.0, "motion": 50.0, "ensemble": 100.0}


def test_ensemble_errors():
  eye = np.eye(3, dtype=np.float32)
  with pytest.raises(ValueError, match="motion"):
    ensemble.ensemble_logits({"joint": eye, "bone": eye})
  with pytest.raises(ValueError, match="shape|same"):
    ensemble.ensemble_logits({"joint": eye, "bone": eye, "motion": eye[:2]})
  with pytest.raises(ValueError, match="extra"):
    ensemble.ensemble_logits({"joint": eye, "bone": eye, "motion": eye, "extra": eye})


# ----------------------------------------------------------------------------- geometry


def test_bank_class_similarity_known_values():
  bank = np.asarray([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
  index = np.asarray([0, 1, 2, 0, -1])  # row 3 is sample 0's older key; row 4 never filled
  labels = np.asarray([0, 0, 1])
  result = geometry.bank_class_similarity(bank, index, labels)
  # same class, other samples: (0, 1) 0.6 and (3, 1) 0.6, each both ways; rows 0 and 3 are
  # one sample's keys and do not count.
  assert result["same"] == pytest.approx(0.6)
  # other classes: row 2 against rows 0, 1, 3: 0, 0.8, 0.
  assert result["other"] == pytest.approx(0.8 / 3)
  assert geometry.bank_class_similarity(bank, np.full(5, -1), labels) == {"same": None,
                                                                          "other": None}
  assert geometry.mean_pairwise_cosine(np.asarray([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])) == \
      pytest.approx((0.0 - 1.0 + 0.0) / 3)


# ----------------------------------------------------------------------------- nuisance probe


def test_nuisance_attributes_known_values():
  x = np.zeros((2, 3, 4, 5, 2))
  x[:, 1, :, :, 0] = np.linspace(0.0, 1.6, 5)  # body 0: joints 0.4 m apart vertically
  x[0, 0, :, :, 0] += 0.1 * np.arange(4)[:, None]  # sample 0 moves 0.1 m per frame along x
  x[1, 2, 1, 3, 1] = 0.5  # sample 1 has a second body
  a = nuisance.nuisance_attributes(x)
  np.testing.assert_allclose(a["second_body"], [0, 1])
  np.testing.assert_allclose(a["speed"], [0.1, 0.0], atol=1e-12)
  np.testing.assert_allclose(a["height"], [1.6, 1.6])


def test_nuisance_report_finds_what_the_features_encode():
  rng = np.random.default_rng(0)
  n = 300

  def split():
    x = rng.normal(size=(n, 3, 6, 5, 2)) * 0.01
    x[:, 1, :, :, 0] += rng.uniform(1.0, 2.0, size=(n, 1, 1)) * np.linspace(0, 1, 5)
    x[rng.random(n) < 0.5, ..., 1] = 0
    labels = rng.integers(0, 3, n)
    return x, labels

  (train_j, train_y), (val_j, val_y) = split(), split()
  # Features: the second-body flag (strong), the height, the label, and noise.
  def feats(joints, labels):
    a = nuisance.nuisance_attributes(joints)
    return np.concatenate([10 * a["second_body"][:, None], a["height"][:, None],
                           np.eye(3)[labels], rng.normal(size=(n, 8))], axis=1)

  result = nuisance.report(feats(train_j, train_y), feats(val_j, val_y), train_j, val_j,
                           train_y, val_y, num_classes=3)
  assert result["r2"]["second_body"] > 0.95 and result["r2"]["height"] > 0.9
  assert result["r2"]["speed"] < 0.2  # not in the features
  assert result["ridge_top1"] > 95.0
  shares = [d["variance_share"] for d in result["directions"]]
  assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
  assert "second_body" in nuisance.format_report(result)


def test_stratified_folds_deal_each_class_evenly():
  labels = np.repeat(np.arange(4), [10, 7, 5, 3])
  fold = probe_selection.stratified_folds(labels, 5, seed=3)
  assert fold.shape == labels.shape and set(fold) <= set(range(5))
  for c in range(4):
    counts = np.bincount(fold[labels == c], minlength=5)
    assert counts.max() - counts.min() <= 1
  with pytest.raises(ValueError, match="num_folds"):
    probe_selection.stratified_folds(labels, 1)


def test_cross_validated_probe_picks_from_its_grid_and_learns():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 8)) * 3.0
  train_x, train_y = _blobs(rng, centres, 60, 1.0)
  val_x, val_y = _blobs(rng, centres, 30, 1.0)
  out = probe_selection.cross_validated_probe(
      train_x, train_y, val_x, val_y, num_classes=3, lrs=(0.5, 0.005),
      weight_decays=(0.0, 0.1), default_lr=0.5, batch_size=16, num_folds=3, epochs=5)
  assert tuple(out["choice"]) in {(0.5, 0.0), (0.5, 0.1), (0.005, 0.0), (0.005, 0.1)}
  assert out["cv_top1"] == max(out["cv_grid"].values())
  assert out["val_top1"] > 80.0 and out["default_top1"] > 80.0  # chance is 33.3
