"""On-device skeleton augmentations and MATS, the motion-adaptive transformation strategy.

Every function is pure JAX, jittable and vectorised over the batch: per-sample parameters are
drawn in one batched call from an explicit PRNG key. Batches are (N, C, T, V, M) with C = 3
(x, y, z); masks and actionlets are (N, T, V, M).

Bodies that are all zero in the input (the absent second person of single-person samples) stay
exactly zero: every transform that could fill them in multiplies its result by the input's
per-(sample, body) presence mask, and mixing transforms never take a body from a partner that
lacks it (they keep the sample's own body there instead).

Probabilities, amounts and shapes are static Python numbers; only the keys and the data are
traced. Layouts (graph.Layout) supply the flip permutation and the body parts as numpy constants.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

Array = jax.Array

# The transforms of T_act (Sec. 3.2) in the order every view applies them. A view is a subset of
# these names; each transform draws from its own fold of the view's key, so that switching one
# transform on or off leaves the randomness of the others unchanged.
ACTIONLET_TRANSFORMS = ("shear", "spatial_flip", "rotate", "axis_mask", "crop", "temporal_flip",
                        "gaussian_noise", "gaussian_blur", "skeleton_adain")
# The key view may only hold transforms that keep every frame and joint where it was: the
# actionlet computed from the key view is applied to the query's input.
KEY_VIEW_TRANSFORMS = ("shear", "rotate", "axis_mask")


def default_config() -> ml_collections.ConfigDict:
  """Default augmentation parameters (NOTES.md, MATS table) and view definitions."""
  return ml_collections.ConfigDict(dict(
      # T_act, spatial.
      shear_amount=0.5,
      flip_p=0.5,
      rotate_max_degrees=30.0,
      rotate_minor_degrees=1.0,
      axis_mask_p=0.5,
      # T_act, temporal.
      crop_pad_ratio=1.0 / 6.0,
      temporal_flip_p=0.5,
      # T_act, spatio-temporal.
      noise_std=0.01,
      noise_p=0.5,
      blur_kernel_size=15,
      blur_sigma_range=(0.1, 2.0),
      blur_p=0.5,
      # T_act, Skeleton AdaIN (Eq. 6).
      adain_p=0.5,
      adain_eps=1e-4,
      adain_max_ratio=2.0,
      # T_non.
      strong_noise_std=0.05,
      strong_noise_p=0.5,
      mix_p=1.0,
      cutmix_num_parts=(2, 3),
      cutmix_frames=(12, 20),
      resizemix_scale=(0.1, 0.5),
      # Views: subsets of ACTIONLET_TRANSFORMS.
      # The query before the actionlet phase. Shear + crop (SkeletonCLR's views), measured:
      # with the whole T_act set as the phase-1 query, MoCo v2 on MSR fell below the random
      # encoder (README, "Choosing the views").
      query_transforms=("shear", "crop"),
      # T_act inside MATS. The paper lists the whole ACTIONLET_TRANSFORMS set, its baseline's
      # view; we follow the phase-1 query's measured view (not measured in phase 2; README).
      actionlet_transforms=("shear", "crop"),
      key_transforms=("shear",),  # the offline (key) view; KEY_VIEW_TRANSFORMS only
      # Left/right flip of the whole sample (both views alike) with this probability: more
      # data without teaching the encoder left/right invariance, which a spatial_flip in
      # one view only does.
      sample_flip_p=0.0,
  ))


def resolve_config(config: Mapping[str, Any] | None = None,
                   **overrides: Any) -> ml_collections.ConfigDict:
  """default_config() updated by `config` (a ConfigDict or dict) and then by `overrides`.

  Raises:
    KeyError: for a field that default_config() does not have.
  """
  cfg = default_config()
  cfg.lock()
  if config is not None:
    cfg.update(config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config))
  cfg.update(overrides)
  return cfg


# ----------------------------------------------------------------------------- helpers


def _presence(x: Array) -> Array:
  """(N, 1, 1, 1, M) 1.0 where a body has any non-zero value, else 0.0."""
  return jnp.any(x != 0, axis=(1, 2, 3), keepdims=True).astype(x.dtype)


def _per_sample(v: Array, ndim: int) -> Array:
  """Reshapes a (N,) array to broadcast against an ndim-dimensional batch."""
  return v.reshape(v.shape[:1] + (1,) * (ndim - 1))


def _normal(key: Array, shape: tuple[int, ...], dtype) -> Array:
  # Drawn flat and reshaped: XLA:CPU compiles multi-dimensional threefry draws an order of
  # magnitude more slowly (seconds per call site) than the same number of flat draws.
  return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _uniform(key: Array, shape: tuple[int, ...], dtype, minval, maxval) -> Array:
  return jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval).reshape(shape)


def _is_static_zero(v: Any) -> bool:
  return isinstance(v, (int, float)) and v <= 0


def _apply_matrix(mat: Array, x: Array) -> Array:
  """x'[n, i] = sum_j mat[n, i, j] x[n, j]; (N, 3, 3), (N, 3, T, V, M).

  Written as an elementwise sum rather than a matmul so that it is exact in float32 on every
  backend (no TF32): an identity matrix gives back x bit for bit.
  """
  return jnp.sum(mat[:, :, :, None, None, None] * x[:, None], axis=2)


def _matmul3(a: Array, b: Array) -> Array:
  """Batched (N, 3, 3) @ (N, 3, 3) in full float32 precision (no TF32)."""
  return jnp.sum(a[:, :, :, None] * b[:, None, :, :], axis=2)


def _partner_bodies(x: Array, partner: Array) -> Array:
  """x[partner], with each body the partner lacks replaced by the sample's own body."""
  xp = x[partner]
  return jnp.where(_presence(xp) > 0, xp, x)


def _with_mask(x: Array, mask: Array | None):
  return x if mask is None else (x, mask)


def random_partner(key: Array, n: int) -> Array:
  """(n,) int32 partner index for each sample: a permutation without fixed points (n > 1).

  Samples are visited in a random order and each is paired with the one a random non-zero
  offset further along that order, so no sample is its own partner. For n == 1 it returns [0].
  """
  if n == 1:
    return jnp.zeros((1,), jnp.int32)
  k_perm, k_shift = jax.random.split(key)
  order = jax.random.permutation(k_perm, n).astype(jnp.int32)
  shift = jax.random.randint(k_shift, (), 1, n)
  follower = order[(jnp.arange(n) + shift) % n]
  return jnp.zeros((n,), jnp.int32).at[order].set(follower)


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


# ----------------------------------------------------------------------------- skeleton mix


def mixup(key: Array, x: Array, partner: Array) -> Array:
  """x' = lambda x + (1 - lambda) x[partner], lambda ~ U(0, 1) per sample. x: (N, C, T, V, M)."""
  lam = _per_sample(jax.random.uniform(key, (x.shape[0],), x.dtype), 5)
  return (lam * x + (1 - lam) * _partner_bodies(x, partner)) * _presence(x)


def _part_membership(parts: Sequence[Sequence[int]], num_joints: int) -> np.ndarray:
  """(P, V) bool, True where joint v belongs to part p."""
  member = np.zeros((len(parts), num_joints), dtype=bool)
  for p, joints in enumerate(parts):
    member[p, list(joints)] = True
  return member


def _random_window(key: Array, n: int, t: int, length: Array) -> Array:
  """(n, t) bool: a window of `length` (n,) frames at a uniform start per sample."""
  start = jnp.floor(jax.random.uniform(key, (n,)) * (t - length + 1)).astype(jnp.int32)
  start = jnp.clip(start, 0, t - length)
  frames = jnp.arange(t)[None]
  return (frames >= start[:, None]) & (frames < (start + length)[:, None])


def cutmix(key: Array, x: Array, partner: Array, parts: Sequence[Sequence[int]],
           num_parts: tuple[int, int] = (2, 3), frames: tuple[int, int] = (12, 20)) -> Array:
  """Replaces num_parts U{lo..hi} random body parts over a window of U{lo..hi} frames (capped
  at T) with the partner's.

  Args:
    key: PRNG key.
    x: (N, C, T, V, M).
    partner: (N,) int.
    parts: body parts, each a sequence of joints (layout.parts).
    num_parts: inclusive range of the number of parts replaced.
    frames: inclusive range of the window length.

  Returns:
    (N, C, T, V, M).
  """
  n, t, v = x.shape[0], x.shape[2], x.shape[3]
  member = _part_membership(parts, v)
  if not 1 <= num_parts[0] <= num_parts[1] <= len(parts):
    raise ValueError(f"cutmix num_parts {num_parts} must lie within 1..{len(parts)}")
  k_rank, k_count, k_len, k_start = jax.random.split(key, 4)
  scores = _uniform(k_rank, (n, len(parts)), jnp.float32, 0.0, 1.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  count = jax.random.randint(k_count, (n,), num_parts[0], num_parts[1] + 1)
  chosen = rank < count[:, None]
  joints = jnp.any(chosen[:, :, None] & member[None], axis=1)
  length = jax.random.randint(k_len, (n,), min(frames[0], t), min(frames[1], t) + 1)
  window = _random_window(k_start, n, t, length)
  region = window[:, None, :, None, None] & joints[:, None, None, :, None]
  return jnp.where(region, _partner_bodies(x, partner), x) * _presence(x)


def resizemix(key: Array, x: Array, partner: Array,
              scale: tuple[float, float] = (0.1, 0.5)) -> Array:
  """Pastes the whole partner sequence, linearly resized in time, into a random window.

  The window holds L = clip(round(U(scale) * T), 1, T) frames at a uniform start; its frame k
  shows the partner at time k (T - 1) / (L - 1) (linear interpolation between frames), so it runs
  from the partner's first frame to its last (a 1-frame window shows the first frame).
  x: (N, C, T, V, M), partner: (N,) int.
  """
  n, t = x.shape[0], x.shape[2]
  k_len, k_start = jax.random.split(key)
  length = jnp.round(jax.random.uniform(k_len, (n,), minval=scale[0], maxval=scale[1]) * t)
  length = jnp.clip(length.astype(jnp.int32), 1, t)
  window = _random_window(k_start, n, t, length)
  start = jnp.argmax(window, axis=1)
  frames = jnp.arange(t)[None]
  pos = ((frames - start[:, None]) * (t - 1)).astype(x.dtype)
  pos = jnp.clip(pos / jnp.maximum(length - 1, 1)[:, None].astype(x.dtype), 0, t - 1)
  lo = jnp.floor(pos).astype(jnp.int32)
  hi = jnp.minimum(lo + 1, t - 1)
  frac = (pos - lo.astype(x.dtype))[:, None, :, None, None]
  xp = _partner_bodies(x, partner)
  take = lambda idx: jnp.take_along_axis(xp, idx[:, None, :, None, None], axis=2)
  resized = (1 - frac) * take(lo) + frac * take(hi)
  return jnp.where(window[:, None, :, None, None], resized, x) * _presence(x)


def skeleton_mix(key: Array, x: Array, partner: Array, parts: Sequence[Sequence[int]],
                 num_parts: tuple[int, int] = (2, 3), frames: tuple[int, int] = (12, 20),
                 scale: tuple[float, float] = (0.1, 0.5)) -> Array:
  """Per sample, one of mixup, cutmix and resizemix (uniformly) with x[partner].
  x: (N, C, T, V, M), partner: (N,) int."""
  k_pick, k_mixup, k_cutmix, k_resize = jax.random.split(key, 4)
  pick = _per_sample(jax.random.randint(k_pick, (x.shape[0],), 0, 3), 5)
  out = jnp.where(pick == 0, mixup(k_mixup, x, partner),
                  cutmix(k_cutmix, x, partner, parts, num_parts, frames))
  return jnp.where(pick == 2, resizemix(k_resize, x, partner, scale), out)


# ----------------------------------------------------------------------------- composites


def _check_names(names: Sequence[str], allowed: Sequence[str], field: str) -> None:
  unknown = [n for n in names if n not in allowed]
  if unknown:
    raise ValueError(f"config key augment.{field}: {unknown} not allowed here; choose from "
                     f"{tuple(allowed)}")


def apply_transforms(key: Array, x: Array, mask: Array | None, names: Sequence[str], layout,
                     cfg: ml_collections.ConfigDict):
  """Applies the T_act transforms named in `names`, in ACTIONLET_TRANSFORMS order.

  Transform i of ACTIONLET_TRANSFORMS draws from jax.random.fold_in(key, i). The optional
  (N, T, V, M) mask follows every transform that moves joints or frames (spatial flip, crop,
  temporal flip).

  Returns:
    (x', mask'), mask' None when mask is None.
  """
  _check_names(names, ACTIONLET_TRANSFORMS, "*_transforms")
  presence = _presence(x)
  k = {name: jax.random.fold_in(key, i) for i, name in enumerate(ACTIONLET_TRANSFORMS)}
  with_mask = lambda out: out if mask is not None else (out, None)
  on = set(names)
  if "shear" in on:
    x = shear(k["shear"], x, cfg.shear_amount)
  if "spatial_flip" in on:
    x, mask = with_mask(spatial_flip(k["spatial_flip"], x, layout.flip_permutation, cfg.flip_p,
                                     mask=mask))
  if "rotate" in on:
    x = rotate(k["rotate"], x, cfg.rotate_max_degrees, cfg.rotate_minor_degrees)
  if "axis_mask" in on:
    x = axis_mask(k["axis_mask"], x, cfg.axis_mask_p)
  if "crop" in on:
    x, mask = with_mask(crop(k["crop"], x, mask, cfg.crop_pad_ratio))
  if "temporal_flip" in on:
    x, mask = with_mask(temporal_flip(k["temporal_flip"], x, mask, cfg.temporal_flip_p))
  if "gaussian_noise" in on:
    x = gaussian_noise(k["gaussian_noise"], x, cfg.noise_std, cfg.noise_p)
  if "gaussian_blur" in on:
    x = gaussian_blur(k["gaussian_blur"], x, cfg.blur_kernel_size, tuple(cfg.blur_sigma_range),
                      cfg.blur_p)
  if "skeleton_adain" in on:
    k_partner, k_adain = jax.random.split(k["skeleton_adain"])
    x = skeleton_adain(k_adain, x, random_partner(k_partner, x.shape[0]), cfg.adain_p,
                       cfg.adain_eps, cfg.adain_max_ratio)
  return x * presence, mask


def sample_flip(key: Array, x: Array, layout, config: Mapping[str, Any] | None = None,
                **overrides: Any) -> Array:
  """Left/right flip of whole samples with probability sample_flip_p, before both views are
  drawn (so the views of a pair agree). x: (N, C, T, V, M)."""
  cfg = resolve_config(config, **overrides)
  return spatial_flip(key, x, layout.flip_permutation, cfg.sample_flip_p)


def key_view(key: Array, x: Array, layout, config: Mapping[str, Any] | None = None,
             **overrides: Any) -> Array:
  """The offline (key) view: the transforms named in config.key_transforms (default shear).

  Only KEY_VIEW_TRANSFORMS are allowed: they leave every frame and joint in place, so that the
  actionlet computed from the key view lines up with the input that MATS transforms.
  x: (N, 3, T, V, M).
  """
  cfg = resolve_config(config, **overrides)
  _check_names(cfg.key_transforms, KEY_VIEW_TRANSFORMS, "key_transforms")
  return apply_transforms(key, x, None, cfg.key_transforms, layout, cfg)[0]


def actionlet_transform(key: Array, x: Array, mask: Array | None, layout,
                        config: Mapping[str, Any] | None = None, **overrides: Any):
  """T_act: the transforms named in config.actionlet_transforms (default shear and crop; the
  paper's set is all of ACTIONLET_TRANSFORMS: shear, spatial flip, rotate, axis mask; crop,
  temporal flip; Gaussian noise, Gaussian blur; Skeleton AdaIN with a random partner).

  Args:
    key: PRNG key.
    x: (N, 3, T, V, M).
    mask: (N, T, V, M) actionlet, or None; it follows the flips and the crop.
    layout: graph.Layout (flip permutation).
    config: fields of default_config(); overrides win over it.

  Returns:
    (x_act, mask'), mask' None when mask is None.
  """
  cfg = resolve_config(config, **overrides)
  return apply_transforms(key, x, mask, cfg.actionlet_transforms, layout, cfg)


def non_actionlet_transform(key: Array, x_act: Array, layout,
                            config: Mapping[str, Any] | None = None, **overrides: Any) -> Array:
  """T_non, applied on top of x_act: strong Gaussian noise (strong_noise_std, strong_noise_p),
  then, with probability mix_p per sample, skeleton_mix with a random partner of the batch.
  x_act: (N, 3, T, V, M); layout supplies the body parts for CutMix."""
  cfg = resolve_config(config, **overrides)
  k_noise, k_partner, k_mix, k_flag = jax.random.split(key, 4)
  presence = _presence(x_act)
  x = gaussian_noise(k_noise, x_act, cfg.strong_noise_std, cfg.strong_noise_p)
  if not _is_static_zero(cfg.mix_p):
    partner = random_partner(k_partner, x.shape[0])
    mixed = skeleton_mix(k_mix, x, partner, layout.parts, tuple(cfg.cutmix_num_parts),
                         tuple(cfg.cutmix_frames), tuple(cfg.resizemix_scale))
    flag = jax.random.bernoulli(k_flag, cfg.mix_p, (x.shape[0],))
    x = jnp.where(_per_sample(flag, 5), mixed, x)
  return x * presence


def mats_keys(key: Array) -> tuple[Array, Array]:
  """The (actionlet, non-actionlet) keys that mats(key, ...) passes to actionlet_transform and
  non_actionlet_transform."""
  k_act, k_non = jax.random.split(key)
  return k_act, k_non


def combine(x_act: Array, x_non: Array, actionlet: Array) -> Array:
  """Eq. 7: A x_act + (1 - A) x_non; x_act, x_non (N, C, T, V, M), A (N, T, V, M) broadcast
  over channels. Where A = 1 it is x_act and where A = 0 it is x_non, exactly."""
  a = actionlet[:, None].astype(x_act.dtype)
  return a * x_act + (1 - a) * x_non


def mats(key: Array, x: Array, actionlet: Array, layout,
         config: Mapping[str, Any] | None = None, return_views: bool = False,
         **overrides: Any):
  """MATS, Eq. 7: X_trans = A' X_act + (1 - A') X_non.

  (X_act, A') = actionlet_transform(x, A), X_non = non_actionlet_transform(X_act); the keys
  are mats_keys(key).

  Args:
    key: PRNG key.
    x: (N, 3, T, V, M) query input.
    actionlet: (N, T, V, M) actionlet A in [0, 1], aligned with x; broadcast over channels.
    layout: graph.Layout.
    config: fields of default_config(); overrides win over it.
    return_views: also return the parts of Eq. 7.

  Returns:
    X_trans (N, 3, T, V, M), or (X_trans, X_act, X_non, A') with return_views. Under jit,
    XLA may recompute X_act and X_non inside the fusion that combines them, so X_trans can
    differ from the returned views by float rounding (a few ulp) even where A' is 0 or 1.
  """
  cfg = resolve_config(config, **overrides)
  k_act, k_non = mats_keys(key)
  x_act, a = actionlet_transform(k_act, x, actionlet.astype(x.dtype), layout, cfg)
  x_non = non_actionlet_transform(k_non, x_act, layout, cfg)
  x_trans = combine(x_act, x_non, a)
  return (x_trans, x_act, x_non, a) if return_views else x_trans


def query_view(key: Array, x: Array, layout, config: Mapping[str, Any] | None = None,
               **overrides: Any) -> Array:
  """The plain MoCo v2 query view used before the actionlet phase: the transforms named in
  config.query_transforms, on the whole sequence. x: (N, 3, T, V, M)."""
  cfg = resolve_config(config, **overrides)
  return apply_transforms(key, x, None, cfg.query_transforms, layout, cfg)[0]
