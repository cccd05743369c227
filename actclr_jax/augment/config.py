"""The augmentation config: transform names, default parameters, and their validation.

A config is a ConfigDict of default_config()'s fields (configs/default.py's `augment` block is
default_config() itself). resolve_config() merges a config and overrides into a full one and
validates it; every error names the offending key as `augment.<field>`.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import ml_collections

# The transforms of T_act (Sec. 3.2) in the order every view applies them. A view is a subset of
# these names; each transform draws from its own fold of the view's key, so that switching one
# transform on or off leaves the randomness of the others unchanged. The paper's T_act is
# PAPER_ACTIONLET_TRANSFORMS; temporal_resize (a speed change), bone_scale (a body shape) and
# motion_scale (a motion's amplitude) are not in the paper: ours, last so that the others keep
# their folds.
PAPER_ACTIONLET_TRANSFORMS = ("shear", "spatial_flip", "rotate", "axis_mask", "crop",
                              "temporal_flip", "gaussian_noise", "gaussian_blur", "skeleton_adain")
ACTIONLET_TRANSFORMS = PAPER_ACTIONLET_TRANSFORMS + ("temporal_resize", "bone_scale",
                                                     "motion_scale")
# The key view may only hold transforms that keep every frame and joint where it was: the
# actionlet computed from the key view is applied to the query's input.
KEY_VIEW_TRANSFORMS = ("shear", "rotate", "axis_mask", "bone_scale")


def default_config() -> ml_collections.ConfigDict:
  """The augmentation defaults (NOTES.md, MATS table, and ours where measured): the one place
  they are set. configs/default.py takes its `augment` block from here; a data-set config
  overrides fields (configs/synthetic.py: the shear and the views)."""
  return ml_collections.ConfigDict(dict(
      # T_act, spatial. The shear is the family's 0.5; the main job runs 0.1
      # (configs/synthetic.py). On MSR 0.3 failed its rule and 0.1 its screen, MoCo v2's linear
      # 10 points under the random encoder's (README, "The shear at 0.3 on MSR", "The shear at
      # 0.1 on MSR").
      shear_amount=0.5,
      flip_p=0.5,
      rotate_max_degrees=30.0,
      rotate_minor_degrees=1.0,
      axis_mask_p=0.5,
      # bone_scale (ours, in the phase-1 query and key): each bone's length times U(1 - amount,
      # 1 + amount), another subject's body shape with the same motion. 0.2 from MSR's subjects
      # (a bone's mean length varies by 3-16% across them); 0.3 failed a screen (README, "A
      # stronger bone-length change").
      bone_scale_amount=0.2,
      # motion_scale (ours, in no view by default): each joint's motion about its mean pose times
      # U(1 - amount, 1 + amount), another subject's amplitude of the same action.
      motion_scale_amount=0.2,
      # T_act, temporal.
      crop_pad_ratio=1.0 / 6.0,
      temporal_flip_p=0.5,
      # temporal_resize (ours, a speed change): the window's share of T, (low, high) within
      # (0, 1]. (0.5, 1) wrecked the synthetic job's phase 1; (0.8, 1) helped both development
      # sets (README).
      temporal_resize_range=(0.8, 1.0),
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
      # encoder (README, "Choosing the views"). temporal_resize (0.8, 1) added at stop 23: on
      # MSR, 3 seeds, MoCo v2 +5.9 and ActCLR +4.8 linear final, and +3.0 standardised KNN on
      # the synthetic job, 2 seeds (README, "A speed change"). + skeleton_adain failed a
      # screen on MSR (README, "Skeleton AdaIN in the phase-1 query"). + bone_scale (stop 38),
      # MSR, 3 seeds, linear final: MoCo v2 +5.7 and ActCLR +13.6 over the random encoder,
      # ActCLR +7.8 over MoCo v2 (README, "A bone-length change in the phase-1 query").
      query_transforms=("shear", "crop", "temporal_resize", "bone_scale"),
      # T_act inside MATS. The paper lists PAPER_ACTIONLET_TRANSFORMS, its baseline's view; we
      # use the phase-1 query's shear + crop (the paper's set not measured in phase 2;
      # + temporal_resize lowered ActCLR on MSR, README "The speed change in T_act too").
      actionlet_transforms=("shear", "crop"),
      # The offline (key) view: KEY_VIEW_TRANSFORMS only (they keep frames and joints in
      # place, so the key's actionlet lines up with the query's input).
      key_transforms=("shear",),
      # The key view before the actionlet phase (throughout with actionlet.enabled=False): no
      # actionlet is taken from it, so any ACTIONLET_TRANSFORMS name is allowed. + bone_scale
      # (stop 39; its own factors, so body shape no longer marks a key in the bank), MSR, 3
      # seeds, linear final: MoCo v2 +9.4 and ActCLR +15.0 over the random encoder, ActCLR
      # +5.6 over MoCo v2 (README, "The bone-length change in the phase-1 key too"). The
      # query's whole view here lowered both methods (README, "The key view in phase 1").
      phase1_key_transforms=("shear", "bone_scale"),
      # Mirror image of the whole sample (x negated, left and right joints swapped; both views
      # alike) with this probability: more data without teaching the encoder left/right
      # invariance, which a spatial_flip in one view only does. The joint swap alone
      # (spatial_flip, the family's flip) leaves the untrained encoder's feature unchanged.
      # 0.5 failed a screen on MSR (README, "The mirror on MSR").
      sample_flip_p=0.0,
  ))


def resolve_config(config: Mapping[str, Any] | None = None,
                   **overrides: Any) -> ml_collections.ConfigDict:
  """default_config() updated by `config` (a ConfigDict or dict) and then by `overrides`, and
  validated (validate_config).

  Raises:
    KeyError: for a field that default_config() does not have, naming it as augment.<field>.
    ValueError: for a bad value (validate_config).
  """
  cfg = default_config()
  cfg.lock()
  given = {}
  if config is not None:
    given.update(config.to_dict() if isinstance(config, ml_collections.ConfigDict)
                 else dict(config))
  given.update(overrides)
  for field in given:
    if field not in cfg:
      raise KeyError(f"config key augment.{field} does not exist; the augment fields are "
                     f"{sorted(cfg.keys())}")
  cfg.update(given)
  validate_config(cfg)
  return cfg


def check_names(names: Any, allowed: Sequence[str], field: str) -> None:
  """Raises ValueError naming augment.<field> unless `names` is a sequence of `allowed` names."""
  if isinstance(names, str) or not isinstance(names, Sequence):
    raise ValueError(f"config key augment.{field}={names!r}: expected a tuple of names from "
                     f"{tuple(allowed)}")
  unknown = [n for n in names if n not in allowed]
  if unknown:
    raise ValueError(f"config key augment.{field}: {unknown} not allowed here; choose from "
                     f"{tuple(allowed)}")


_PROBABILITIES = ("flip_p", "axis_mask_p", "temporal_flip_p", "noise_p", "blur_p", "adain_p",
                  "strong_noise_p", "mix_p", "sample_flip_p")
_NON_NEGATIVE = ("shear_amount", "rotate_max_degrees", "rotate_minor_degrees", "crop_pad_ratio",
                 "noise_std", "strong_noise_std", "bone_scale_amount", "motion_scale_amount")
# (field, smallest allowed low end): inclusive (low, high) ranges.
_RANGES = (("blur_sigma_range", 0.0), ("cutmix_num_parts", 1), ("cutmix_frames", 1),
           ("resizemix_scale", 0.0), ("temporal_resize_range", 0.0))


def _is_number(v: Any) -> bool:
  # Traced values (a config built inside jit) are not checked; configs hold Python numbers.
  return isinstance(v, numbers.Real)


def validate_config(cfg: ml_collections.ConfigDict) -> None:
  """Checks a full augment config (all of default_config()'s fields).

  Raises:
    ValueError: naming the key augment.<field> of the first bad value: a transform name outside
      ACTIONLET_TRANSFORMS (KEY_VIEW_TRANSFORMS for key_transforms), a probability outside
      [0, 1], a negative amount, a range that is not (low, high) with low <= high, an even blur
      kernel, or an AdaIN ratio bound below 1.
  """
  check_names(cfg.query_transforms, ACTIONLET_TRANSFORMS, "query_transforms")
  check_names(cfg.actionlet_transforms, ACTIONLET_TRANSFORMS, "actionlet_transforms")
  check_names(cfg.key_transforms, KEY_VIEW_TRANSFORMS, "key_transforms")
  check_names(cfg.phase1_key_transforms, ACTIONLET_TRANSFORMS, "phase1_key_transforms")

  def fail(field, expected):
    raise ValueError(f"config key augment.{field}={cfg[field]!r}: expected {expected}")

  for field in _PROBABILITIES:
    if _is_number(cfg[field]) and not 0 <= cfg[field] <= 1:
      fail(field, "a probability in [0, 1]")
  for field in _NON_NEGATIVE:
    if _is_number(cfg[field]) and cfg[field] < 0:
      fail(field, "a value >= 0")
  for field, low in _RANGES:
    r = cfg[field]
    if isinstance(r, str) or not isinstance(r, Sequence) or len(r) != 2:
      fail(field, "a (low, high) pair")
    if all(_is_number(v) for v in r) and not low <= r[0] <= r[1]:
      fail(field, f"{low} <= low <= high")
  if all(_is_number(v) for v in cfg.temporal_resize_range) and not (
      0 < cfg.temporal_resize_range[0] and cfg.temporal_resize_range[1] <= 1):
    fail("temporal_resize_range", "0 < low <= high <= 1")
  if _is_number(cfg.blur_sigma_range[0]) and cfg.blur_sigma_range[0] <= 0:
    fail("blur_sigma_range", "sigmas > 0")
  k = cfg.blur_kernel_size
  if not isinstance(k, numbers.Integral) or k < 1 or k % 2 == 0:
    fail("blur_kernel_size", "an odd integer >= 1")
  if _is_number(cfg.adain_eps) and cfg.adain_eps <= 0:
    fail("adain_eps", "a value > 0")
  if _is_number(cfg.adain_max_ratio) and cfg.adain_max_ratio < 1:
    fail("adain_max_ratio", "a value >= 1")
  if _is_number(cfg.bone_scale_amount) and cfg.bone_scale_amount >= 1:
    fail("bone_scale_amount", "a value in [0, 1) (a bone would vanish or flip)")
  if _is_number(cfg.motion_scale_amount) and cfg.motion_scale_amount >= 1:
    fail("motion_scale_amount", "a value in [0, 1) (the motion would vanish or reverse)")
