"""Tests for the transforms of actclr_jax.augment: shapes, jit, identities and invariances."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actclr_jax import augment
from actclr_jax import graph
from actclr_jax.augment import transforms
from tests.conftest import (ACT, C, KEY, LAYOUT, M, MASK, MATS, N, NON, PARTNER, PARTS,
                            PERM, SHARED_DATA, T, V, augment_batch as _batch,
                            augment_mask as _mask)

# Each transform as a jitted f(key, x) -> x', with its default parameters.
TRANSFORMS = {
    "shear": jax.jit(augment.shear),
    "spatial_flip": jax.jit(functools.partial(augment.spatial_flip, flip_perm=PERM)),
    "rotate": jax.jit(augment.rotate),
    "axis_mask": jax.jit(augment.axis_mask),
    "bone_scale": jax.jit(functools.partial(augment.bone_scale, parents=LAYOUT.parents,
                                            center=LAYOUT.center, flip_permutation=PERM)),
    "motion_scale": jax.jit(augment.motion_scale),
    "crop": jax.jit(augment.crop),
    "temporal_flip": jax.jit(augment.temporal_flip),
    "temporal_resize": jax.jit(augment.temporal_resize),
    "gaussian_noise": jax.jit(augment.gaussian_noise),
    "gaussian_blur": jax.jit(augment.gaussian_blur),
    "skeleton_adain": jax.jit(functools.partial(augment.skeleton_adain, partner=PARTNER)),
    "mixup": jax.jit(functools.partial(augment.mixup, partner=PARTNER)),
    "cutmix": jax.jit(functools.partial(augment.cutmix, partner=PARTNER, parts=PARTS)),
    "resizemix": jax.jit(functools.partial(augment.resizemix, partner=PARTNER)),
    "skeleton_mix": jax.jit(functools.partial(augment.skeleton_mix, partner=PARTNER,
                                              parts=PARTS)),
    "key_view": jax.jit(functools.partial(augment.key_view, layout=LAYOUT)),
    "query_view": jax.jit(functools.partial(augment.query_view, layout=LAYOUT)),
    "actionlet_transform": lambda k, x: ACT(k, x, MASK)[0],
    "non_actionlet_transform": NON,
    "mats": lambda k, x: MATS(k, x, MASK)[0],
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_shape_dtype_jit_zero_bodies_determinism(name):
  fn = TRANSFORMS[name]
  x = jnp.asarray(_batch())
  out = fn(KEY, x)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert np.all(np.isfinite(out))
  # Absent second bodies stay exactly zero; present ones are not wiped out.
  assert np.all(np.asarray(out)[[0, 2], ..., 1] == 0)
  assert np.any(np.asarray(out)[[1, 3], ..., 1] != 0)
  np.testing.assert_array_equal(out, fn(KEY, x))


@pytest.mark.parametrize("name", ["shear", "rotate", "gaussian_noise", "skeleton_mix", "mats",
                                  "actionlet_transform", "non_actionlet_transform"])
def test_different_key_changes_output(name):
  x = jnp.asarray(_batch())
  fn = TRANSFORMS[name]
  assert not np.allclose(fn(jax.random.PRNGKey(1), x), fn(jax.random.PRNGKey(2), x))


def test_p_zero_and_zero_amount_are_identity():
  x = jnp.asarray(_batch())
  m = jnp.asarray(_mask())
  eq = np.testing.assert_array_equal
  eq(augment.shear(KEY, x, amount=0.0), x)
  eq(augment.rotate(KEY, x, max_degrees=0.0, minor_degrees=0.0), x)
  eq(augment.axis_mask(KEY, x, p=0.0), x)
  eq(augment.gaussian_noise(KEY, x, p=0.0), x)
  eq(augment.gaussian_blur(KEY, x, p=0.0), x)
  eq(augment.skeleton_adain(KEY, x, PARTNER, p=0.0), x)
  eq(augment.bone_scale(KEY, x, LAYOUT.parents, LAYOUT.center, PERM, amount=0.0), x)
  eq(augment.motion_scale(KEY, x, amount=0.0), x)
  for out in (augment.spatial_flip(KEY, x, PERM, p=0.0, mask=m),
              augment.temporal_flip(KEY, x, m, p=0.0),
              augment.crop(KEY, x, m, pad_ratio=0.0),
              augment.temporal_resize(KEY, x, m, ratio_range=(1.0, 1.0))):
    eq(out[0], x)
    eq(out[1], m)
  # The traced (non-early-return) paths are identities too when no coin comes up.
  eq(jax.jit(lambda k, a: augment.shear(k, a, amount=1e-30))(KEY, x), x)
  eq(augment.gaussian_blur(KEY, x, kernel_size=1), x)


def test_flip_twice_is_identity():
  x = jnp.asarray(_batch())
  m = jnp.asarray(_mask())
  for p in (0.5, 1.0):
    for key in jax.random.split(KEY, 3):
      x1, m1 = augment.spatial_flip(key, x, PERM, p, mask=m)
      x2, m2 = augment.spatial_flip(key, x1, PERM, p, mask=m1)
      np.testing.assert_array_equal(x2, x)
      np.testing.assert_array_equal(m2, m)
      x1, m1 = augment.temporal_flip(key, x, m, p)
      x2, m2 = augment.temporal_flip(key, x1, m1, p)
      np.testing.assert_array_equal(x2, x)
      np.testing.assert_array_equal(m2, m)
  # p = 1 really flips: joints swap and time reverses.
  xs = augment.spatial_flip(KEY, x, PERM, 1.0)
  np.testing.assert_array_equal(xs, np.asarray(x)[:, :, :, PERM])
  xt, mt = augment.temporal_flip(KEY, x, m, 1.0)
  np.testing.assert_array_equal(xt, np.asarray(x)[:, :, ::-1])
  np.testing.assert_array_equal(mt, np.asarray(m)[:, ::-1])


def _bone_lengths(x):
  child, parent = np.array(LAYOUT.edges).T
  bones = np.asarray(x)[:, :, :, child] - np.asarray(x)[:, :, :, parent]
  return np.linalg.norm(bones, axis=1)


def test_rotation_preserves_bone_lengths_shear_does_not():
  x = jnp.asarray(_batch())
  rotated = TRANSFORMS["rotate"](KEY, x)
  assert not np.allclose(rotated, x)
  np.testing.assert_allclose(_bone_lengths(rotated), _bone_lengths(x), rtol=1e-4, atol=1e-5)
  sheared = augment.shear(KEY, x)
  assert not np.allclose(_bone_lengths(sheared), _bone_lengths(x), rtol=1e-2)


def test_bone_scale_rescales_each_bone_by_one_factor_and_keeps_its_direction():
  x = jnp.asarray(_batch())
  amount = 0.3
  out = TRANSFORMS["bone_scale"](KEY, x, amount=amount)
  child, parent = np.array(LAYOUT.edges).T
  before = np.asarray(x)[:, :, :, child] - np.asarray(x)[:, :, :, parent]
  after = np.asarray(out)[:, :, :, child] - np.asarray(out)[:, :, :, parent]
  factors = {}
  for n, m in [(0, 0), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1)]:  # the bodies present
    b, a = before[n, ..., m], after[n, ..., m]  # (3, T, bones)
    factor = (a * b).sum((0, 1)) / (b * b).sum((0, 1))  # one factor per bone
    np.testing.assert_allclose(a, factor * b, atol=1e-5)
    assert np.all((factor >= 1 - amount - 1e-5) & (factor <= 1 + amount + 1e-5))
    assert factor.std() > 0.05  # bones get different factors
    factors[n, m] = factor
    by_child = dict(zip(child, factor))
    for left, right in LAYOUT.flip_pairs:  # a left bone and its right twin alike
      if left in by_child and right in by_child:
        assert by_child[left] == pytest.approx(by_child[right], rel=1e-4)
  # The two people of a sample get different bodies.
  assert not np.allclose(factors[1, 0], factors[1, 1], atol=1e-3)
  # The centre joint stays where it was.
  np.testing.assert_array_equal(np.asarray(out)[:, :, :, LAYOUT.center],
                                np.asarray(x)[:, :, :, LAYOUT.center])


def test_motion_scale_scales_each_body_about_its_mean_pose():
  x = jnp.asarray(_batch())
  amount = 0.3
  out = np.asarray(TRANSFORMS["motion_scale"](KEY, x, amount=amount))
  mean_pose = np.asarray(x).mean(axis=2, keepdims=True)
  np.testing.assert_allclose(out.mean(axis=2, keepdims=True), mean_pose, atol=1e-5)
  factors = {}
  for n, m in [(0, 0), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1)]:  # the bodies present
    before = (np.asarray(x) - mean_pose)[n, ..., m]
    after = out[n, ..., m] - mean_pose[n, ..., m]
    factor = (after * before).sum() / (before * before).sum()  # one factor per body
    np.testing.assert_allclose(after, factor * before, atol=1e-5)
    assert 1 - amount - 1e-5 <= factor <= 1 + amount + 1e-5
    factors[n, m] = factor
  assert len({round(float(f), 4) for f in factors.values()}) == len(factors)
  # A body absent from some frames keeps them zero, and its mean pose is over its own frames.
  partial = np.asarray(x).copy()
  partial[1, :, :10, :, 1] = 0
  moved = np.asarray(TRANSFORMS["motion_scale"](KEY, jnp.asarray(partial), amount=amount))
  assert np.all(moved[1, :, :10, :, 1] == 0)
  np.testing.assert_allclose(moved[1, :, 10:, :, 1].mean(axis=1),
                             partial[1, :, 10:, :, 1].mean(axis=1), atol=1e-5)
  with pytest.raises(ValueError, match="augment.motion_scale_amount"):
    augment.resolve_config(None, motion_scale_amount=1.0)


def test_shear_matrix_has_unit_diagonal():
  # With one-hot channel inputs the output channels are the matrix columns.
  x = np.zeros((N, C, 1, 3, 1), np.float32)
  for j in range(3):
    x[:, j, 0, j, 0] = 1
  mat = np.asarray(augment.shear(KEY, jnp.asarray(x), amount=0.5))[:, :, 0, :, 0]
  np.testing.assert_array_equal(np.diagonal(mat, axis1=1, axis2=2), 1)
  off = mat[:, ~np.eye(3, dtype=bool)]
  assert np.all(np.abs(off) <= 0.5) and np.all(off != 0)


def test_axis_mask_zeroes_one_channel():
  x = jnp.asarray(_batch())
  out = np.asarray(augment.axis_mask(KEY, x, p=1.0))
  zeroed = np.all(out == 0, axis=(2, 3, 4))
  assert np.all(zeroed.sum(1) == 1)
  np.testing.assert_array_equal(out[~zeroed], np.asarray(x)[~zeroed])


def test_crop_warps_x_and_mask_identically():
  frames = np.arange(1, T + 1, dtype=np.float32)
  x = np.broadcast_to(frames[None, None, :, None, None], (N, C, T, V, M)).copy()
  m = np.broadcast_to(frames[None, :, None, None], (N, T, V, M)) * 10
  pad = T // 6
  padded = np.pad(frames, pad, mode="reflect")
  windows = {tuple(padded[o:o + T]) for o in range(2 * pad + 1)}
  offsets = set()
  for key in jax.random.split(KEY, 5):
    xc, mc = jax.jit(augment.crop)(key, jnp.asarray(x), jnp.asarray(m))
    xc, mc = np.asarray(xc), np.asarray(mc)
    np.testing.assert_array_equal(mc, xc[:, 0] * 10)
    for i in range(N):
      seq = tuple(xc[i, 0, :, 0, 0])
      assert seq in windows
      offsets.add(seq)
      assert np.all(xc[i] == xc[i, :1, :, :1, :1])  # same warp for every channel/joint/body
  assert len(offsets) > 1


def test_temporal_resize_changes_speed_within_range_and_warps_mask_alike():
  # x = frame index: a resampled sequence is a straight line whose slope is the window's
  # share r of T (speed x 1/r), r within the range, starting and ending inside the input.
  frames = np.arange(T, dtype=np.float32)
  x = np.broadcast_to(frames[None, None, :, None, None], (N, C, T, V, M)).copy()
  m = np.broadcast_to(frames[None, :, None, None], (N, T, V, M)) * 10
  slopes = []
  for key in jax.random.split(KEY, 5):
    xr, mr = jax.jit(augment.temporal_resize, static_argnames="ratio_range")(
        key, jnp.asarray(x), jnp.asarray(m), ratio_range=(0.5, 0.8))
    xr, mr = np.asarray(xr), np.asarray(mr)
    np.testing.assert_allclose(mr, xr[:, 0] * 10, rtol=1e-6, atol=1e-4)
    for i in range(N):
      seq = xr[i, 0, :, 0, 0]
      slope = np.diff(seq)
      np.testing.assert_allclose(slope, slope[0], atol=1e-4)
      assert 0.5 - 1e-5 <= slope[0] <= 0.8 + 1e-5
      assert seq[0] >= 0 and seq[-1] <= T - 1 + 1e-4
      assert np.all(xr[i] == xr[i, :1, :, :1, :1])  # same warp for every channel/joint/body
      slopes.append(slope[0])
  assert np.ptp(slopes) > 0.05  # per-sample speeds


def test_gaussian_blur_smooths_and_keeps_constants():
  x = jnp.asarray(_batch())
  out = augment.gaussian_blur(KEY, x, p=1.0)
  rough = lambda a: np.abs(np.diff(np.asarray(a), axis=2)).mean()
  assert rough(out) < rough(x)
  const = jnp.ones((N, C, T, V, M))
  np.testing.assert_allclose(augment.gaussian_blur(KEY, const, p=1.0), const, rtol=1e-6)
  with pytest.raises(ValueError):
    augment.gaussian_blur(KEY, x, kernel_size=4)


def test_random_partner_is_derangement():
  for n in (2, 3, 8):
    for key in jax.random.split(KEY, 3):
      partner = np.asarray(augment.random_partner(key, n))
      assert sorted(partner) == list(range(n))
      assert np.all(partner != np.arange(n))
  np.testing.assert_array_equal(augment.random_partner(KEY, 1), [0])


def test_mixup_lies_on_segment_with_a_uniform_per_sample_lambda():
  x = jnp.asarray(_batch())
  # All bodies present so the partner is always used.
  x = x.at[:, ..., 1].set(jnp.asarray(_batch(5))[:, ..., 0])
  xp = np.asarray(x)[np.asarray(PARTNER)]
  d = (np.asarray(x) - xp).reshape(N, -1)
  lams = []
  for key in jax.random.split(KEY, 25):
    r = (np.asarray(TRANSFORMS["mixup"](key, x)) - xp).reshape(N, -1)
    lam = (d * r).sum(1) / (d * d).sum(1)
    # One lambda for every value of a sample: the output is on the segment x[partner] -> x.
    np.testing.assert_allclose(r, lam[:, None] * d, atol=1e-5)
    lams.append(lam)
  lams = np.concatenate(lams)
  # 100 draws of U(0, 1): per sample, not one per batch, and spread over the whole interval
  # (a fixed or Beta(alpha, alpha)-peaked lambda, or x and partner swapped, fails these).
  assert len(np.unique(np.round(lams, 4))) > 90
  assert abs(lams.mean() - 0.5) < 0.1
  assert (lams < 0.2).mean() > 0.08 and (lams > 0.8).mean() > 0.08
  # With itself as partner, mixup changes nothing.
  np.testing.assert_allclose(augment.mixup(KEY, x, jnp.arange(N)), x, rtol=1e-6, atol=1e-6)


def test_cutmix_replaces_parts_within_window():
  x = jnp.asarray(_batch())
  x = x.at[:, ..., 1].set(jnp.asarray(_batch(5))[:, ..., 0])
  xp = np.asarray(x)[np.asarray(PARTNER)]
  member = np.zeros((len(PARTS), V), bool)
  for p, joints in enumerate(PARTS):
    member[p, list(joints)] = True
  for key in jax.random.split(KEY, 4):
    out = np.asarray(augment.cutmix(key, x, PARTNER, PARTS))
    changed = np.any(out != np.asarray(x), axis=(1, 4))  # (N, T, V)
    region = np.broadcast_to(changed[:, None, :, :, None], out.shape)
    np.testing.assert_array_equal(out[region], xp[region])
    for i in range(N):
      frames = np.flatnonzero(changed[i].any(1))
      joints = changed[i].any(0)
      assert 12 <= len(frames) <= 20 and np.all(np.diff(frames) == 1)
      assert np.all(changed[i] == np.outer(changed[i].any(1), joints))
      parts = [p for p in range(len(PARTS)) if joints[member[p]].all()]
      assert 2 <= len(parts) <= 3
      np.testing.assert_array_equal(joints, member[parts].any(0))


def test_resizemix_pastes_resized_partner():
  x = jnp.asarray(_batch())
  x = x.at[:, ..., 1].set(jnp.asarray(_batch(5))[:, ..., 0])
  xp = np.asarray(x)[np.asarray(PARTNER)]
  for key in jax.random.split(KEY, 4):
    out = np.asarray(augment.resizemix(key, x, PARTNER))
    changed = np.any(out != np.asarray(x), axis=(1, 3, 4))  # (N, T)
    for i in range(N):
      frames = np.flatnonzero(changed[i])
      assert round(0.1 * T) <= len(frames) <= round(0.5 * T) and np.all(np.diff(frames) == 1)
      length = len(frames)
      np.testing.assert_allclose(out[i, :, frames[0]], xp[i, :, 0], atol=1e-6)
      np.testing.assert_allclose(out[i, :, frames[-1]], xp[i, :, -1], atol=1e-6)
      pos = np.arange(length) * (T - 1) / (length - 1)
      expect = np.stack([np.interp(pos, np.arange(T), xp[i, c, :, v, m])
                         for c in range(C) for v in range(V) for m in range(M)])
      got = out[i][:, frames].transpose(0, 2, 3, 1).reshape(-1, length)
      np.testing.assert_allclose(got, expect, atol=1e-5)


def test_skeleton_adain_swaps_style_and_keeps_the_body():
  """Trajectory and motion amplitude come from the partner (within the clip); the pose (each
  joint's mean offset from the trajectory) stays the sample's own."""
  rng = np.random.default_rng(5)
  pose = rng.normal(size=(N, C, 1, V, M)) * 0.3
  trajectory = np.cumsum(rng.normal(size=(N, C, T, 1, M)) * 0.02, axis=2)
  motion = rng.normal(size=(N, C, T, V, M)) * np.array([0.01, 0.03, 0.02, 0.015])[:, None, None,
                                                                                  None, None]
  x = (trajectory + pose + motion).astype(np.float32)
  x[[0, 2], ..., 1] = 0
  out = np.asarray(augment.skeleton_adain(KEY, jnp.asarray(x), PARTNER, p=1.0, eps=1e-6,
                                          max_ratio=2.0))
  parts = lambda a: [np.asarray(v) for v in transforms._adain_parts(jnp.asarray(a), 1e-6)]
  traj, pose_in, mot, amp = parts(x)
  traj_out, pose_out, _, amp_out = parts(out)
  partner = np.asarray(PARTNER)
  for i in range(N):
    own = [0, 1] if x[i, ..., 1].any() and x[partner[i], ..., 1].any() else [0]
    for m in own:
      np.testing.assert_allclose(traj_out[i, ..., m], traj[partner[i], ..., m], atol=1e-5)
      np.testing.assert_allclose(pose_out[i, ..., m], pose_in[i, ..., m], atol=1e-5)
      ratio = np.clip(amp[partner[i], ..., m] / amp[i, ..., m], 0.5, 2.0)
      np.testing.assert_allclose(amp_out[i, ..., m], amp[i, ..., m] * ratio, rtol=1e-3)
  # Sample 1's partner (2) lacks a second body: sample 1 keeps its own body there.
  np.testing.assert_allclose(out[1, ..., 1], x[1, ..., 1], atol=1e-5)


def _real_or_synthetic_batch(n=64):
  """(n, 3, 50, V, M) real MSR sequences (preprocessed) if ../shared/data is there, else
  synthetic sequences of the built-in generator; and the layout."""
  # pylint: disable=g-import-not-at-top
  from actclr_jax.data import preprocess
  from actclr_jax.data.prepare import msr, synthetic
  root = os.path.join(SHARED_DATA, "msr_action3d")
  if os.path.isdir(root):
    files = sorted(f for f in os.listdir(root) if f.endswith("_skeleton3D.txt"))[:n]
    layout = graph.get_layout("msr")
    seqs = [msr.read_sequence(os.path.join(root, f)) for f in files]
    seqs = [s.transpose(2, 0, 1)[..., None] for s in seqs if np.abs(s).sum() > 0]
    x = np.stack([preprocess.preprocess_sequence(s, layout, frames=50) for s in seqs])
    return x.astype(np.float32), layout
  layout = graph.get_layout("ntu")
  data = synthetic.generate(n, seed=0)["data"]
  x = np.stack([preprocess.preprocess_sequence(s, layout, frames=50) for s in data])
  return x.astype(np.float32), layout


def test_skeleton_adain_keeps_bone_lengths_and_range():
  """On real skeletons (MSR) at p=1: the 5th-95th percentile of per-frame bone-length ratios
  lies within [0.75, 1.33] (measured: 0.81-1.15 on MSR, 0.86-1.09 on synthetic data; the
  literal Eq. 6 gives 0.10-18.9), and coordinates stay within 1.5x the data's range."""
  x, layout = _real_or_synthetic_batch()
  partner = augment.random_partner(jax.random.PRNGKey(3), len(x))
  out = np.asarray(augment.skeleton_adain(KEY, jnp.asarray(x), partner, p=1.0))
  child, parent = np.array(layout.edges).T
  length = lambda a: np.linalg.norm(a[:, :, :, child] - a[:, :, :, parent], axis=1)
  before, after = length(x), length(out)
  present = before > 0.02
  ratio = after[present] / before[present]
  lo, hi = np.percentile(ratio, [5, 95])
  assert 0.75 <= lo <= 1.0 <= hi <= 1.33, (lo, hi)
  assert np.abs(out).max() <= 1.5 * np.abs(x).max()
