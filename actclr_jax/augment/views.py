"""Composition of the views from the transforms: the key view, the phase-1 query view, the
whole-sample flip, and MATS (Eq. 6-7: T_act, T_non and their actionlet-weighted combination).

Each view takes its parameters from a config (config.resolve_config): a ConfigDict or dict of
default_config() fields, then keyword overrides. x is (N, 3, T, V, M); actionlets (N, T, V, M).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from actclr_jax.augment.config import ACTIONLET_TRANSFORMS, check_names, resolve_config
from actclr_jax.augment.helpers import (_is_static_zero, _per_sample, _presence,
                                        random_partner)
from actclr_jax.augment.mixing import skeleton_mix
from actclr_jax.augment.transforms import (axis_mask, bone_scale, crop, gaussian_blur,
                                           gaussian_noise, motion_scale, rotate, shear,
                                           skeleton_adain, spatial_flip, temporal_flip,
                                           temporal_resize)

Array = jax.Array

# Negates x, the first coordinate channel of (N, C, T, V, M): a reflection, whatever the view.
_X_REFLECTION = np.array([-1.0, 1.0, 1.0]).reshape(1, 3, 1, 1, 1)


def apply_transforms(key: Array, x: Array, mask: Array | None, names: Sequence[str], layout,
                     cfg: ml_collections.ConfigDict):
  """Applies the T_act transforms named in `names`, in ACTIONLET_TRANSFORMS order.

  Transform i of ACTIONLET_TRANSFORMS draws from jax.random.fold_in(key, i). The optional
  (N, T, V, M) mask follows every transform that moves joints or frames (spatial flip, crop,
  temporal flip, temporal resize).

  Returns:
    (x', mask'), mask' None when mask is None.
  """
  # The config's fields are checked by resolve_config; this catches direct calls.
  check_names(names, ACTIONLET_TRANSFORMS, "*_transforms")
  presence = _presence(x)
  k = {name: jax.random.fold_in(key, i) for i, name in enumerate(ACTIONLET_TRANSFORMS)}
  with_mask = lambda out: out if mask is not None else (out, None)
  on = set(names)
  # Body shape first, on the skeleton as captured, before the shear distorts its bones.
  if "bone_scale" in on:
    x = bone_scale(k["bone_scale"], x, layout.parents, layout.center, layout.flip_permutation,
                   cfg.bone_scale_amount)
  if "motion_scale" in on:
    x = motion_scale(k["motion_scale"], x, cfg.motion_scale_amount)
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
  if "temporal_resize" in on:
    x, mask = with_mask(temporal_resize(k["temporal_resize"], x, mask,
                                        tuple(cfg.temporal_resize_range)))
  return x * presence, mask


def sample_flip(key: Array, x: Array, layout, config: Mapping[str, Any] | None = None,
                **overrides: Any) -> Array:
  """Mirror image of whole samples with probability sample_flip_p, before both views are
  drawn (so the views of a pair agree): the x coordinate negated and the left and right joints
  swapped, so that a right-hand wave becomes a left-hand wave. x: (N, C, T, V, M).

  The joint swap alone (`spatial_flip`, the family's flip) would be no new sample for the
  encoder: the graph is symmetric under it and the weights are shared across joints, so the
  untrained network's pooled feature changes by float rounding only.
  """
  cfg = resolve_config(config, **overrides)
  if _is_static_zero(cfg.sample_flip_p):
    return x
  flag = jax.random.bernoulli(key, cfg.sample_flip_p, (x.shape[0],))
  mirrored = x[:, :, :, np.asarray(layout.flip_permutation)] * _X_REFLECTION.astype(x.dtype)
  return jnp.where(_per_sample(flag, 5), mirrored, x)


def key_view(key: Array, x: Array, layout, config: Mapping[str, Any] | None = None,
             phase1: bool = False, **overrides: Any) -> Array:
  """The offline (key) view: the transforms named in config.key_transforms (default shear), or
  with phase1=True, before the actionlet phase, in config.phase1_key_transforms.

  key_transforms allows only KEY_VIEW_TRANSFORMS (resolve_config checks): they leave every frame
  and joint in place, so that the actionlet computed from the key view lines up with the input
  that MATS transforms. No actionlet is taken from the phase-1 key view, so any name is allowed
  there; it defaults to shear + bone_scale, which is the key view (shear) with the bone lengths
  changed, the same draws per transform for the same key.
  x: (N, 3, T, V, M).
  """
  cfg = resolve_config(config, **overrides)
  names = cfg.phase1_key_transforms if phase1 else cfg.key_transforms
  return apply_transforms(key, x, None, names, layout, cfg)[0]


def actionlet_transform(key: Array, x: Array, mask: Array | None, layout,
                        config: Mapping[str, Any] | None = None, **overrides: Any):
  """T_act: the transforms named in config.actionlet_transforms (default shear and crop; the
  paper's set is PAPER_ACTIONLET_TRANSFORMS: shear, spatial flip, rotate, axis mask; crop,
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
