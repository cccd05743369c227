"""On-device skeleton augmentations and MATS, the motion-adaptive transformation strategy.

Modules, one job each:
  config      transform names (ACTIONLET_TRANSFORMS, KEY_VIEW_TRANSFORMS), default parameters,
              merging and validation of `config.augment`;
  helpers     shared batch helpers: body presence, per-sample broadcasting, random partners;
  transforms  the individual T_act transforms (shear ... Skeleton AdaIN of Eq. 6);
  mixing      skeleton mixing for T_non (mixup, cutmix, resizemix);
  views       the key view, the query view, the sample flip and MATS (Eq. 6-7).

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

from actclr_jax.augment.config import (ACTIONLET_TRANSFORMS, KEY_VIEW_TRANSFORMS,
                                       PAPER_ACTIONLET_TRANSFORMS, check_names, default_config,
                                       resolve_config, validate_config)
from actclr_jax.augment.helpers import body_presence, random_partner
from actclr_jax.augment.mixing import cutmix, mixup, resizemix, skeleton_mix
from actclr_jax.augment.transforms import (axis_mask, bone_scale, crop, gaussian_blur,
                                           gaussian_noise, motion_scale, rotate, shear,
                                           skeleton_adain, spatial_flip, temporal_flip,
                                           temporal_resize)
from actclr_jax.augment.views import (actionlet_transform, apply_transforms, combine, key_view,
                                      mats, mats_keys, non_actionlet_transform, query_view,
                                      sample_flip)

__all__ = [
    "ACTIONLET_TRANSFORMS", "KEY_VIEW_TRANSFORMS", "PAPER_ACTIONLET_TRANSFORMS",
    "actionlet_transform", "apply_transforms", "axis_mask", "body_presence", "bone_scale",
    "check_names", "combine", "crop", "cutmix", "default_config", "gaussian_blur", "gaussian_noise",
    "key_view", "mats", "mats_keys", "mixup", "motion_scale", "non_actionlet_transform",
    "query_view",
    "random_partner", "resizemix", "resolve_config", "rotate", "sample_flip", "shear",
    "skeleton_adain", "skeleton_mix", "spatial_flip", "temporal_flip", "temporal_resize",
    "validate_config",
]
