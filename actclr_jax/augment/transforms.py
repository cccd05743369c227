"""The individual T_act transforms (Sec. 3.2), each vectorised over the batch.

Spatial: shear, spatial_flip, rotate, axis_mask, bone_scale, motion_scale. Temporal: crop,
temporal_flip, temporal_resize. Spatio-temporal: gaussian_noise, gaussian_blur, skeleton_adain
(Eq. 6). Each takes a PRNG key and x (N, C, T, V, M); the warps that move joints or frames also
carry an optional (N, T, V, M) mask. A probability or amount that is a static zero returns the
input unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax import graph
from actclr_jax.augment.helpers import (_apply_matrix, _is_static_zero, _matmul3, _normal,
                                        _partner_bodies, _per_sample, _presence, _uniform,
                                        _with_mask)

Array = jax.Array


# ----------------------------------------------------------------------------- spatial


def shear(key: Array, x: Array, amount: float = 0.5) -> Array:
  """Per-sample shear: x' = S x over the channel axis, S = 1 on the diagonal, off-diagonals
  U(-amount, amount). x: (N, 3, T, V, M)."""
  if _is_static_zero(amount):
    return x
  eye = jnp.eye(3, dtype=x.dtype)
  off = _uniform(key, (x.shape[0], 3, 3), x.dtype, -amount, amount)
  mat = eye + off * (1 - eye)
  return _apply_matrix(mat, x) * _presence(x)


def bone_scale(key: Array, x: Array, parents: Sequence[int], center: int,
               flip_permutation: Sequence[int], amount: float = 0.2) -> Array:
  """Another body shape with the same motion: per sample and body, every bone's length times
  s ~ U(1 - amount, 1 + amount), a left bone and its right twin alike; the bone directions (so
  the joint angles) and the centre joint's trajectory are kept. Joints are rebuilt outwards
  from the centre: x'_j = x_centre + sum_k paths[j, k] s_k (x_k - x_parents[k]).

  Args:
    key: PRNG key.
    x: (N, C, T, V, M).
    parents: (V,) each joint's parent (graph.Layout.parents); the centre is its own.
    center: the root joint, which stays in place.
    flip_permutation: (V,) left/right joint swap; a bone and its twin share s.
    amount: half-width of the scale's range, in [0, 1).
  """
  if _is_static_zero(amount):
    return x
  num_joints = len(parents)
  paths = graph.bone_paths(parents, center)
  bones = x - x[:, :, :, np.asarray(parents)]
  twin = np.minimum(np.arange(num_joints), np.asarray(flip_permutation))
  num_bodies = x.shape[4]
  scale = _uniform(key, (x.shape[0], num_joints, num_bodies), x.dtype, 1.0 - amount,
                   1.0 + amount)[:, twin]
  scaled = bones * scale[:, None, None]
  # Full float32 sums, as the shear's: a TF32 product on a GPU would move joints by ~1e-3 of
  # their coordinates.
  rebuilt = x[:, :, :, center:center + 1] + jnp.einsum(
      "nctkm,jk->nctjm", scaled, paths, precision=jax.lax.Precision.HIGHEST)
  return rebuilt * _presence(x)


def motion_scale(key: Array, x: Array, amount: float = 0.2) -> Array:
  """Another amplitude of the same motion: per sample and body, x' = m + a (x - m), m each
  joint's mean over the frames where the body is present (the mean pose, kept), a ~ U(1 - amount,
  1 + amount); frames where the body is absent stay zero. A subject who moves less or more in the
  same action. x: (N, C, T, V, M).
  """
  if _is_static_zero(amount):
    return x
  frame_present = jnp.any(x != 0, axis=(1, 3), keepdims=True).astype(x.dtype)  # (N, 1, T, 1, M)
  mean_pose = (jnp.sum(x * frame_present, axis=2, keepdims=True)
               / jnp.maximum(jnp.sum(frame_present, axis=2, keepdims=True), 1.0))
  scale = _uniform(key, (x.shape[0], x.shape[4]), x.dtype, 1.0 - amount, 1.0 + amount)
  return (mean_pose + scale[:, None, None, None, :] * (x - mean_pose)) * frame_present


def spatial_flip(key: Array, x: Array, flip_perm: Sequence[int], p: float = 0.5,
                 mask: Array | None = None):
  """Swaps left and right joints (x[..., flip_perm, :]) of each sample with probability p.

  Args:
    key: PRNG key.
    x: (N, C, T, V, M).
    flip_perm: (V,) joint permutation, layout.flip_permutation (an involution).
    p: flip probability.
    mask: optional (N, T, V, M) per-joint mask (the actionlet), permuted with its sample.

  Returns:
    x', or (x', mask') when mask is given.
  """
  if _is_static_zero(p):
    return _with_mask(x, mask)
  perm = np.asarray(flip_perm)
  flag = jax.random.bernoulli(key, p, (x.shape[0],))
  x = jnp.where(_per_sample(flag, 5), x[:, :, :, perm], x)
  if mask is not None:
    mask = jnp.where(_per_sample(flag, 4), mask[:, :, perm], mask)
  return _with_mask(x, mask)


def _axis_rotations(angles: Array) -> tuple[Array, Array, Array]:
  """(N, 3, 3) rotations about x, y and z by angles[:, 0], [:, 1], [:, 2] (radians)."""
  c, s = jnp.cos(angles), jnp.sin(angles)
  one, zero = jnp.ones_like(c[:, 0]), jnp.zeros_like(c[:, 0])

  def mat(rows):
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)

  rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
  ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
  rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
  return rx, ry, rz


def rotate(key: Array, x: Array, max_degrees: float = 30.0, minor_degrees: float = 1.0) -> Array:
  """Per-sample rotation R = Rz Ry Rx. A random main axis per sample is rotated by
  U(-max_degrees, max_degrees), the other two by U(-minor_degrees, minor_degrees).
  x: (N, 3, T, V, M)."""
  if _is_static_zero(max_degrees) and _is_static_zero(minor_degrees):
    return x
  n = x.shape[0]
  k_axis, k_main, k_minor = jax.random.split(key, 3)
  axis = jax.random.randint(k_axis, (n,), 0, 3)
  main = jax.random.uniform(k_main, (n,), x.dtype, -max_degrees, max_degrees)
  minor = _uniform(k_minor, (n, 3), x.dtype, -minor_degrees, minor_degrees)
  degrees = jnp.where(jnp.arange(3)[None] == axis[:, None], main[:, None], minor)
  rx, ry, rz = _axis_rotations(degrees * (math.pi / 180.0))
  mat = _matmul3(rz, _matmul3(ry, rx))
  return _apply_matrix(mat, x) * _presence(x)


def axis_mask(key: Array, x: Array, p: float = 0.5) -> Array:
  """With probability p per sample, zeroes one random channel (x, y or z). x: (N, 3, T, V, M)."""
  if _is_static_zero(p):
    return x
  n = x.shape[0]
  k_flag, k_axis = jax.random.split(key)
  flag = jax.random.bernoulli(k_flag, p, (n,))
  axis = jax.random.randint(k_axis, (n,), 0, x.shape[1])
  drop = flag[:, None] & (jnp.arange(x.shape[1])[None] == axis[:, None])
  return x * (1 - drop.astype(x.dtype))[:, :, None, None, None]


# ----------------------------------------------------------------------------- temporal


def crop(key: Array, x: Array, mask: Array | None = None, pad_ratio: float = 1.0 / 6.0):
  """Reflect-pads P = floor(T * pad_ratio) frames at both ends, then takes a T-frame window at
  a per-sample offset U{0, ..., 2P} (a random temporal shift with reflected borders).

  Args:
    key: PRNG key.
    x: (N, C, T, V, M).
    mask: optional (N, T, V, M), warped exactly like x.
    pad_ratio: P / T; P is capped at T - 1 (reflect padding needs it).

  Returns:
    x', or (x', mask') when mask is given.
  """
  t = x.shape[2]
  pad = min(int(math.floor(t * pad_ratio + 1e-6)), t - 1)
  if pad <= 0:
    return _with_mask(x, mask)
  offset = jax.random.randint(key, (x.shape[0],), 0, 2 * pad + 1)

  def window(a, time_axis):
    widths = [(0, 0)] * a.ndim
    widths[time_axis] = (pad, pad)
    padded = jnp.pad(a, widths, mode="reflect")
    take = lambda ai, o: jax.lax.dynamic_slice_in_dim(ai, o, t, axis=time_axis - 1)
    return jax.vmap(take)(padded, offset)

  x = window(x, 2)
  if mask is not None:
    mask = window(mask, 1)
  return _with_mask(x, mask)


def temporal_flip(key: Array, x: Array, mask: Array | None = None, p: float = 0.5):
  """Reverses time for each sample with probability p (and the optional (N, T, V, M) mask
  with it). Returns x', or (x', mask') when mask is given."""
  if _is_static_zero(p):
    return _with_mask(x, mask)
  flag = jax.random.bernoulli(key, p, (x.shape[0],))
  x = jnp.where(_per_sample(flag, 5), x[:, :, ::-1], x)
  if mask is not None:
    mask = jnp.where(_per_sample(flag, 4), mask[:, ::-1], mask)
  return _with_mask(x, mask)


def temporal_resize(key: Array, x: Array, mask: Array | None = None,
                    ratio_range: tuple[float, float] = (0.8, 1.0)):
  """A per-sample window of L = r * T frames, r ~ U(ratio_range), at a uniform offset,
  stretched back to T frames by linear interpolation: the action plays 1 / r times slower.

  The paper's crop only shifts time, so a view keeps the sequence's speed; this one changes it.

  Args:
    key: PRNG key.
    x: (N, C, T, V, M).
    mask: optional (N, T, V, M), resampled exactly like x.
    ratio_range: (low, high), 0 < low <= high <= 1.

  Returns:
    x', or (x', mask') when mask is given.
  """
  n, t = x.shape[0], x.shape[2]
  low, high = ratio_range
  if t < 2 or (low == 1.0 and high == 1.0):
    return _with_mask(x, mask)
  k_ratio, k_offset = jax.random.split(key)
  span = _uniform(k_ratio, (n,), jnp.float32, low, high) * (t - 1)  # in frame intervals
  start = _uniform(k_offset, (n,), jnp.float32, 0.0, 1.0) * (t - 1 - span)
  pos = start[:, None] + span[:, None] * jnp.linspace(0.0, 1.0, t)[None]  # (N, T)
  lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, t - 1)
  hi = jnp.minimum(lo + 1, t - 1)
  frac = pos - lo

  def resample(a, time_axis):
    shape = [1] * a.ndim
    shape[0], shape[time_axis] = n, t
    take = lambda idx: jnp.take_along_axis(a, idx.reshape(shape), axis=time_axis)
    w = frac.reshape(shape).astype(a.dtype)
    return take(lo) * (1 - w) + take(hi) * w

  x = resample(x, 2)
  if mask is not None:
    mask = resample(mask, 1)
  return _with_mask(x, mask)


# ----------------------------------------------------------------------------- spatio-temporal


def gaussian_noise(key: Array, x: Array, std: float = 0.01, p: float = 0.5) -> Array:
  """Adds N(0, std^2) noise to every value of a sample with probability p. x: (N, C, T, V, M)."""
  if _is_static_zero(p) or _is_static_zero(std):
    return x
  k_flag, k_noise = jax.random.split(key)
  flag = jax.random.bernoulli(k_flag, p, (x.shape[0],))
  noise = std * _normal(k_noise, x.shape, x.dtype)
  return (x + jnp.where(_per_sample(flag, 5), noise, 0)) * _presence(x)


def gaussian_blur(key: Array, x: Array, kernel_size: int = 15,
                  sigma_range: tuple[float, float] = (0.1, 2.0), p: float = 0.5) -> Array:
  """Temporal Gaussian smoothing with probability p per sample.

  A normalised kernel of `kernel_size` (odd) taps, sigma ~ U(sigma_range) per sample, slides over
  the frames of every channel, joint and body; the sequence is edge-padded so the length stays T.
  x: (N, C, T, V, M).
  """
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"gaussian_blur needs an odd kernel_size >= 1, got {kernel_size}")
  if _is_static_zero(p) or kernel_size == 1:
    return x
  n, t = x.shape[0], x.shape[2]
  radius = kernel_size // 2
  k_flag, k_sigma = jax.random.split(key)
  flag = jax.random.bernoulli(k_flag, p, (n,))
  sigma = jax.random.uniform(k_sigma, (n,), x.dtype, sigma_range[0], sigma_range[1])
  taps = jnp.arange(-radius, radius + 1, dtype=x.dtype)
  weights = jnp.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
  weights = weights / weights.sum(axis=1, keepdims=True)
  padded = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0), (0, 0)), mode="edge")
  blurred = sum(_per_sample(weights[:, k], 5) * padded[:, :, k:k + t]
                for k in range(kernel_size))
  return jnp.where(_per_sample(flag, 5), blurred, x) * _presence(x)


def _adain_parts(x: Array, eps: float) -> tuple[Array, Array, Array, Array]:
  """x = trajectory + pose + motion, and the motion's amplitude, per sample and body.

  trajectory (N, C, T, 1, M): the spatial mean over joints, mu of Eq. 6;
  pose (N, C, 1, V, M): each joint's temporal mean offset from the trajectory (the body shape);
  motion (N, C, T, V, M): the rest;
  amplitude (N, C, 1, 1, M): the temporal std of the motion, pooled over joints (sigma of Eq. 6).
  """
  trajectory = jnp.mean(x, axis=3, keepdims=True)
  centred = x - trajectory
  pose = jnp.mean(centred, axis=2, keepdims=True)
  motion = centred - pose
  amplitude = jnp.sqrt(jnp.mean(jnp.square(motion), axis=(2, 3), keepdims=True) + eps ** 2)
  return trajectory, pose, motion, amplitude


def skeleton_adain(key: Array, x: Array, partner: Array, p: float = 1.0, eps: float = 1e-4,
                   max_ratio: float = 2.0) -> Array:
  """Skeleton AdaIN (Eq. 6): sample i takes the style of sample j = partner[i] and keeps its
  own action.

  Each sequence splits into trajectory + pose + motion (_adain_parts). The style is the
  trajectory mu (global position over time) and the motion's amplitude sigma (how large and
  fast the movement is); the content is the pose and the normalised motion:

    x_i' = mu_j + pose_i + motion_i * clip(sigma_j / sigma_i, 1 / max_ratio, max_ratio).

  Eq. 6 read literally standardises x - mu by its per-joint temporal std without removing the
  joint's temporal mean, which rescales each joint's offset from the body centre by a ratio of
  stds (0.03x to 30x) and breaks the skeleton. Here the body shape is kept exactly, and the clip
  bounds the change of amplitude, so bone lengths change by at most the motion's share of them
  (tests/test_augment.py states the measured bound). A body the partner lacks keeps its own
  style.

  Args:
    key: PRNG key, for the per-sample coin with probability p.
    x: (N, C, T, V, M).
    partner: (N,) int, the j of each i (e.g. random_partner).
    p: probability of transforming a sample.
    eps: amplitude floor (the data's units, metres), so that still sequences are not amplified.
    max_ratio: bound on the amplitude ratio.

  Returns:
    (N, C, T, V, M).
  """
  if _is_static_zero(p):
    return x
  trajectory, pose, motion, amplitude = _adain_parts(x, eps)
  trajectory_j, _, _, amplitude_j = _adain_parts(_partner_bodies(x, partner), eps)
  ratio = jnp.clip(amplitude_j / amplitude, 1.0 / max_ratio, max_ratio)
  out = trajectory_j + pose + motion * ratio
  flag = jax.random.bernoulli(key, p, (x.shape[0],))
  return jnp.where(_per_sample(flag, 5), out, x) * _presence(x)

