"""Tests of the synthetic skeleton data set and its ground-truth actionlets."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from actclr_jax import graph
from actclr_jax.data import io
from actclr_jax.data.prepare import synthetic

LAYOUT = graph.get_layout("ntu")
EDGES = np.array(LAYOUT.edges)
T = 60


@pytest.fixture(scope="module")
def dataset() -> dict:
  return synthetic.generate(1500, seed=0, max_frames=T)


def _valid(num_frames: np.ndarray, frames: int) -> np.ndarray:
  return np.arange(frames)[None, :] < num_frames[:, None]


def test_shapes_and_dtypes(dataset):
  n = 1500
  assert dataset["data"].shape == (n, 3, T, 25, 2) and dataset["data"].dtype == np.float32
  assert dataset["label"].shape == (n,) and dataset["label"].dtype == np.int64
  assert dataset["actionlet"].shape == (n, T, 25) and dataset["actionlet"].dtype == bool
  for key in ("subject", "view", "num_frames", "num_bodies"):
    assert dataset[key].shape == (n,)
  assert set(np.unique(dataset["label"])) == set(range(synthetic.NUM_CLASSES))
  assert len(synthetic.CLASS_NAMES) >= 10
  assert np.bincount(dataset["label"]).min() >= n // synthetic.NUM_CLASSES  # balanced
  assert set(np.unique(dataset["subject"])) == set(range(1, 11))
  assert set(np.unique(dataset["view"])) == {1, 2, 3}
  assert set(np.unique(dataset["num_bodies"])) == {1, 2}
  assert dataset["num_frames"].min() >= 40 and dataset["num_frames"].max() <= T
  assert len(np.unique(dataset["num_frames"])) > 10  # lengths vary
  assert np.isfinite(dataset["data"]).all()


def test_deterministic_given_seed():
  a = synthetic.generate(100, seed=7, max_frames=50)
  b = synthetic.generate(100, seed=7, max_frames=50)
  c = synthetic.generate(100, seed=8, max_frames=50)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["data"], c["data"])
  assert not np.array_equal(a["label"], c["label"])


def test_padding_and_bodies(dataset):
  data, num_frames = dataset["data"], dataset["num_frames"]
  valid = _valid(num_frames, T)
  # Body 0 is non-zero exactly on the valid frames (the 50-frame resize relies on it).
  body0 = np.any(data[..., 0] != 0, axis=(1, 3))
  np.testing.assert_array_equal(body0, valid)
  body1 = np.any(data[..., 1] != 0, axis=(1, 3))
  two = dataset["num_bodies"] == 2
  np.testing.assert_array_equal(body1[two], valid[two])
  assert not body1[~two].any()
  assert not dataset["actionlet"][~valid].any()
  assert 0.15 < two.mean() < 0.45


def test_bystander_stands_beside_the_actor_and_stays_idle(dataset):
  two = np.flatnonzero(dataset["num_bodies"] == 2)
  data, mask = dataset["data"][two], dataset["actionlet"][two]
  frames = dataset["num_frames"][two]
  actor = synthetic.motion_energy_features(data)
  bystander = synthetic.motion_energy_features(data[..., ::-1])
  per_frame = lambda e: e.max(1) / (frames - 1)
  # The actor's most active joint moves far more than anything the bystander does.
  assert np.median(per_frame(actor) / per_frame(bystander)) > 5
  gap = np.linalg.norm(data[:, :, 0, 0, 0] - data[:, :, 0, 0, 1], axis=1)  # pelvis to pelvis
  assert gap.min() > 0.4 and gap.max() < 2.0
  assert mask.any(axis=(1, 2)).all()


def test_actionlet_follows_class_joints(dataset):
  mask, label = dataset["actionlet"], dataset["label"]
  assert mask.any(axis=(1, 2)).all(), "every sample has a non-empty actionlet"
  for c in range(synthetic.NUM_CLASSES):
    touched = set(np.flatnonzero(mask[label == c].any(axis=(0, 1))))
    assert touched <= set(synthetic.CLASS_JOINTS[c]), synthetic.CLASS_NAMES[c]
  # Independent expectations for a few classes (0-based NTU joints).
  names = list(synthetic.CLASS_NAMES)
  joints = lambda name: set(np.flatnonzero(mask[label == names.index(name)].any(axis=(0, 1))))
  assert joints("nod") == {3} and joints("tilt head") == {3}
  assert joints("kick (right leg)") == {17, 18, 19}
  assert joints("raise right hand") == {9, 10, 11, 23, 24}
  assert joints("wave left hand") == {5, 6, 7, 21, 22}
  assert not joints("squat") & {14, 15, 18, 19}, "feet stay planted in a squat"
  assert not joints("bend down") & {0, 12, 13, 14, 15, 16, 17, 18, 19}, "legs stay in a bend"
  assert joints("jump") == set(range(25))
  # Actionlets are windows in time, not whole sequences.
  valid = _valid(dataset["num_frames"], T)
  area = mask.sum((1, 2)) / (valid.sum(1) * 25)
  assert 0.0 < area.min() and area.max() < 0.9 and 0.05 < area.mean() < 0.5


def test_masked_joints_move_more(dataset):
  data, mask, frames = dataset["data"], dataset["actionlet"], dataset["num_frames"]
  ratios = []
  for i in range(len(data)):
    xyz = data[i, :, :frames[i], :, 0]
    spread = np.sqrt(xyz.var(axis=1).sum(0))  # (V,) positional spread over time
    moving = mask[i].any(0)
    if not moving.all():  # a jump moves every joint
      ratios.append(spread[moving].mean() / spread[~moving].mean())
  ratios = np.array(ratios)
  assert len(ratios) > 0.85 * len(data)
  assert ratios.min() > 1.0
  assert np.mean(ratios > 2.0) > 0.9


def test_bone_lengths_constant_over_time():
  clean = synthetic.generate(60, seed=3, max_frames=T, noise_std=0.0)
  noisy = synthetic.generate(60, seed=3, max_frames=T)
  for d, tolerance in ((clean, 1e-5), (noisy, None)):
    x = d["data"]
    for i in range(len(x)):
      for m in range(d["num_bodies"][i]):
        p = x[i, :, :d["num_frames"][i], :, m]
        length = np.linalg.norm(p[:, :, EDGES[:, 0]] - p[:, :, EDGES[:, 1]], axis=0)  # (t, E)
        if tolerance is not None:
          assert np.abs(length - length[0]).max() < tolerance
        else:
          # Sensor noise only: a few millimetres, trunk bones less than hand and foot bones.
          assert np.median(length.std(0)) < 0.01
  # Noise-free and noisy sequences share the skeleton: mean bone lengths agree.
  p_clean = clean["data"][0, :, :clean["num_frames"][0], :, 0]
  p_noisy = noisy["data"][0, :, :noisy["num_frames"][0], :, 0]
  bones = lambda p: np.linalg.norm(p[:, :, EDGES[:, 0]] - p[:, :, EDGES[:, 1]], axis=0).mean(0)
  np.testing.assert_allclose(bones(p_clean), bones(p_noisy), atol=0.01)


def test_subjects_have_fixed_bodies(dataset):
  x, subject = dataset["data"], dataset["subject"]
  p = x[:, :, 0, :, 0]  # first frame of the actor
  bones = np.linalg.norm(p[:, :, EDGES[:, 0]] - p[:, :, EDGES[:, 1]], axis=1)  # (N, E)
  for s in (1, 2):
    rows = bones[subject == s]
    assert np.abs(rows - rows[0]).max() < 0.05  # the same person up to noise
  assert np.abs(bones[subject == 1].mean(0) - bones[subject == 2].mean(0)).max() > 0.01


def test_plausible_metres(dataset):
  data, valid = dataset["data"], _valid(dataset["num_frames"], T)
  actor = data[..., 0].transpose(0, 2, 3, 1)[valid]  # (frames, V, 3)
  x, y, z = actor[..., 0], actor[..., 1], actor[..., 2]
  assert np.abs(x).max() < 2.0 and np.abs(y).max() < 1.8
  assert 1.5 < z.min() and z.max() < 4.5 and 2.2 < np.median(z) < 3.6
  first = data[:, :, 0, :, 0]  # (N, 3, V)
  height = first[:, 1, 3] - first[:, 1, [15, 19]].mean(1)  # head centre above the feet
  assert 1.1 < height.min() and height.max() < 1.9
  # Shoulder vector (right minus left) points away from the camera axis less than 90 deg
  # from +x in views facing the camera: the performer's right is camera +x.
  front = dataset["view"] == 1
  shoulder = first[front, :, 8] - first[front, :, 4]
  assert (shoulder[:, 0] > 0.25).all() and (np.linalg.norm(shoulder, axis=1) < 0.5).all()
  upper_arm = np.linalg.norm(first[:, :, 9] - first[:, :, 8], axis=1)
  thigh = np.linalg.norm(first[:, :, 17] - first[:, :, 16], axis=1)
  assert 0.18 < upper_arm.min() and upper_arm.max() < 0.36
  assert 0.3 < thigh.min() and thigh.max() < 0.5


def test_forward_kinematics_keeps_bone_lengths():
  rng = np.random.default_rng(0)
  offsets = synthetic.subject_offsets()[[0, 5]]
  angles = rng.uniform(-np.pi, np.pi, (2, 7, 25, 3))
  root = rng.normal(size=(2, 7, 3))
  positions = synthetic.forward_kinematics(angles, root, offsets)
  np.testing.assert_allclose(positions[:, :, 0], root, atol=1e-12)
  length = np.linalg.norm(positions[:, :, EDGES[:, 0]] - positions[:, :, EDGES[:, 1]], axis=-1)
  rest = synthetic.forward_kinematics(np.zeros_like(angles), np.zeros_like(root), offsets)
  rest_length = np.linalg.norm(rest[:, :, EDGES[:, 0]] - rest[:, :, EDGES[:, 1]], axis=-1)
  np.testing.assert_allclose(length, rest_length, atol=1e-9)
  r = synthetic.euler_matrices(angles)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_splits_cover_all_classes(dataset):
  for split, (train, val) in synthetic.split_masks(dataset["subject"], dataset["view"]).items():
    assert (train ^ val).all()
    for part in (train, val):
      assert set(np.unique(dataset["label"][part])) == set(range(synthetic.NUM_CLASSES)), split
  train, _ = synthetic.split_masks(dataset["subject"], dataset["view"])["xsub"]
  assert set(np.unique(dataset["subject"][train])) == {1, 3, 5, 7, 9}
  train, _ = synthetic.split_masks(dataset["subject"], dataset["view"])["xview"]
  assert set(np.unique(dataset["view"][train])) == {2, 3}


def test_motion_energy_features():
  data = np.zeros((2, 3, 5, 25, 2), np.float32)
  data[:, 2] = 3.0
  data[0, 0, :, 4, 0] = [0.0, 1.0, 3.0, 3.0, 3.0]
  data[1, :, 3:] = 0.0  # two padded frames: the jump into padding must not count
  data[1, 0, :3, 7, 0] = [0.0, 2.0, 2.0]
  energy = synthetic.motion_energy_features(data)
  assert energy.shape == (2, 25)
  np.testing.assert_allclose(energy[0, 4], 1.0 + 4.0)
  np.testing.assert_allclose(energy[1, 7], 4.0)
  assert energy[0].sum() == energy[0, 4] and energy[1].sum() == energy[1, 7]


def test_motion_energy_baseline_is_informative_but_not_perfect(dataset):
  chance = 1.0 / synthetic.NUM_CLASSES
  x, label = dataset["data"], dataset["label"]
  for split, (train, val) in synthetic.split_masks(dataset["subject"], dataset["view"]).items():
    accuracy = synthetic.motion_energy_baseline(x[train], label[train], x[val], label[val])
    assert 3 * chance < accuracy < 0.95, (split, accuracy)


def test_prepare_writes_splits(tmp_path):
  out = str(tmp_path / "synthetic")
  info = synthetic.prepare(out, num_samples=120, seed=2, max_frames=30)
  assert info["layout"] == "ntu" and info["num_samples"] == 120 and info["seed"] == 2
  assert list(info["classes"]) == list(synthetic.CLASS_NAMES)
  reference = synthetic.generate(120, seed=2, max_frames=30)
  for split in ("xsub", "xview"):
    counts = info["splits"][split]
    assert counts["train"] + counts["val"] == 120 and min(counts.values()) > 0
    seen = []
    for part in ("train", "val"):
      directory = os.path.join(out, split)
      data = np.load(os.path.join(directory, f"{part}_data.npy"))
      actionlet = np.load(os.path.join(directory, f"{part}_actionlet.npy"))
      names, labels = io.load_labels(os.path.join(directory, f"{part}_label.pkl"))
      n = counts[part]
      assert data.shape == (n, 3, 30, 25, 2) and data.dtype == np.float32
      assert actionlet.shape == (n, 30, 25) and actionlet.dtype == np.uint8
      assert len(names) == n and all(name.startswith("syn") and len(name) == 9 for name in names)
      index = np.array([int(name[3:]) for name in names])
      np.testing.assert_array_equal(labels, reference["label"][index])
      np.testing.assert_array_equal(data, reference["data"][index])
      np.testing.assert_array_equal(actionlet, reference["actionlet"][index])
      seen.extend(index)
    assert sorted(seen) == list(range(120))
  with open(os.path.join(out, "xsub", "train_label.pkl"), "rb") as f:
    names, labels = pickle.load(f)
  assert isinstance(names, list) and isinstance(labels[0], int)
  text = synthetic.summarize(out)
  assert "xsub" in text and "xview" in text and "baseline" in text and "120 samples" in text


def test_summarize_dict(dataset):
  text = synthetic.summarize(dataset)
  for name in synthetic.CLASS_NAMES:
    assert name in text
  assert "actionlet area" in text and "two bodies" in text and "chance 8.3%" in text


def test_summarize_missing_dir(tmp_path):
  with pytest.raises(io.DataError, match="train_data.npy"):
    synthetic.summarize(str(tmp_path))
