"""Tests for the composed views of actclr_jax.augment: MATS (Eq. 7), the key and query views,
the sample flip, and the validation of config.augment."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actclr_jax import augment
from actclr_jax.models import builder
from configs import default as default_config_file
# The batches and the compiled composites are shared with the transform tests (compiling is the
# slow part on CPU).
from tests.conftest import (ACT, C, FULL, KEY, LAYOUT, M, MASK, MATS, N, NON, PERM, T, V,
                            augment_batch as _batch, augment_mask as _mask, tiny_config)


def test_composites_with_everything_off_are_identity():
  x = jnp.asarray(_batch())
  m = jnp.asarray(_mask())
  off = dict(shear_amount=0.0, flip_p=0.0, rotate_max_degrees=0.0, rotate_minor_degrees=0.0,
             axis_mask_p=0.0, crop_pad_ratio=0.0, temporal_flip_p=0.0, noise_p=0.0, blur_p=0.0,
             adain_p=0.0, strong_noise_p=0.0, mix_p=0.0, temporal_resize_range=(1.0, 1.0),
             **FULL)
  x_act, m_act = augment.actionlet_transform(KEY, x, m, LAYOUT, **off)
  np.testing.assert_array_equal(x_act, x)
  np.testing.assert_array_equal(m_act, m)
  np.testing.assert_allclose(augment.mats(KEY, x, m, LAYOUT, **off), x, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(augment.key_view(KEY, x, LAYOUT, shear_amount=0.0), x)


def test_mats_combines_act_and_non_views():
  x = jnp.asarray(_batch())
  # A hand-built actionlet: 1 on some joints, 0 on the others, fractional on one.
  a = np.zeros((N, T, V, M), np.float32)
  a[:, :, 5:12] = 1
  a[:, :, 20] = 0.5
  a = jnp.asarray(a)
  key = jax.random.PRNGKey(3)
  out, x_act, x_non, a2 = (np.asarray(v) for v in MATS(key, x, a))
  ones = np.broadcast_to(a2[:, None] == 1, out.shape)
  zeros = np.broadcast_to(a2[:, None] == 0, out.shape)
  assert ones.any() and zeros.any()
  assert not np.allclose(x_act, x_non)
  # Exact for the combination itself...
  combined = np.asarray(augment.combine(jnp.asarray(x_act), jnp.asarray(x_non), jnp.asarray(a2)))
  np.testing.assert_array_equal(combined[ones], x_act[ones])
  np.testing.assert_array_equal(combined[zeros], x_non[zeros])
  # ...and up to XLA's recomputation rounding (a few ulp) inside the fused mats program.
  np.testing.assert_allclose(out[ones], x_act[ones], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[zeros], x_non[zeros], rtol=1e-5, atol=1e-6)
  mixed = ~(ones | zeros)
  assert mixed.any()
  np.testing.assert_allclose(out[mixed], 0.5 * (x_act[mixed] + x_non[mixed]), atol=1e-5)
  # The views are the composites called with the keys mats_keys gives (up to XLA fusion
  # rounding between separately compiled programs).
  k_act, k_non = augment.mats_keys(key)
  act, act_mask = ACT(k_act, x, a)
  np.testing.assert_allclose(act, x_act, atol=1e-5)
  np.testing.assert_array_equal(act_mask, a2)
  np.testing.assert_allclose(NON(k_non, jnp.asarray(x_act)), x_non, atol=1e-5)
  np.testing.assert_array_equal(MATS(key, x, a)[0], out)


def test_actionlet_mask_follows_spatial_flip_and_crop():
  # Only the warps on; put the joint and frame index into x and check the mask matches.
  idx = (np.arange(T)[:, None] * 100 + np.arange(V)[None] + 1).astype(np.float32)
  x = np.broadcast_to(idx[None, None, :, :, None], (N, C, T, V, M)).copy()
  m = np.broadcast_to(idx[None, :, :, None], (N, T, V, M)).copy()
  off = dict(shear_amount=0.0, rotate_max_degrees=0.0, rotate_minor_degrees=0.0,
             axis_mask_p=0.0, noise_p=0.0, blur_p=0.0, adain_p=0.0, flip_p=0.5,
             temporal_flip_p=0.5, **FULL)
  for key in jax.random.split(KEY, 3):
    xa, ma = augment.actionlet_transform(key, jnp.asarray(x), jnp.asarray(m), LAYOUT, **off)
    np.testing.assert_array_equal(ma, np.asarray(xa)[:, 0])


def test_config_validation():
  with pytest.raises(KeyError, match=r"augment\.no_such_field"):
    augment.resolve_config(no_such_field=1)
  cfg = augment.resolve_config({"shear_amount": 0.1}, noise_std=0.2)
  assert cfg.shear_amount == 0.1 and cfg.noise_std == 0.2 and cfg.flip_p == 0.5
  with pytest.raises(ValueError, match=r"augment\.key_transforms"):
    augment.key_view(KEY, jnp.asarray(_batch()), LAYOUT, key_transforms=("spatial_flip",))
  with pytest.raises(ValueError, match=r"augment\.query_transforms.*no_such"):
    augment.query_view(KEY, jnp.asarray(_batch()), LAYOUT, query_transforms=("no_such",))


@pytest.mark.parametrize("field, value", [
    ("query_transforms", ("shear", "warp")),
    ("actionlet_transforms", ("no_such",)),
    ("key_transforms", ("crop",)),  # moves frames: not allowed in the key view
    ("phase1_key_transforms", ("no_such",)),
    ("flip_p", 1.5),
    ("mix_p", -0.1),
    ("shear_amount", -0.5),
    ("crop_pad_ratio", -0.1),
    ("temporal_resize_range", (0.0, 1.0)),
    ("temporal_resize_range", (0.5, 1.2)),
    ("temporal_resize_range", (0.9, 0.5)),
    ("blur_kernel_size", 4),
    ("blur_sigma_range", (0.0, 2.0)),
    ("cutmix_frames", (20, 12)),
    ("cutmix_num_parts", (0, 2)),
    ("resizemix_scale", (0.5, 0.1)),
    ("adain_eps", 0.0),
    ("adain_max_ratio", 0.5),
    ("bone_scale_amount", 1.0),
    ("bone_scale_amount", -0.1),
])
def test_bad_config_value_names_its_key(field, value):
  """A bad value in the trainer's config.augment fails before any tracing, naming its key."""
  config = default_config_file.get_config()
  config.augment[field] = value
  with pytest.raises(ValueError, match=rf"config key augment\.{field}\b"):
    augment.mats(KEY, jnp.asarray(_batch()), MASK, LAYOUT, config.augment)


def test_every_config_file_has_a_valid_augment_block():
  """Each config's augment block holds every default_config() field and validates (a data-set
  config overrides values, never drops or adds a field)."""
  for name in ("default", "ntu60", "ntu120", "pku_mmd", "nwucla", "msr", "synthetic"):
    block = importlib.import_module(f"configs.{name}").get_config().augment
    assert list(block.keys()) == list(augment.default_config().keys()), name
    augment.validate_config(block)


def test_views_apply_only_the_named_transforms():
  x = jnp.asarray(_batch())
  # Each transform draws from its own fold of the key: adding one leaves the others' draws.
  sheared = augment.query_view(KEY, x, LAYOUT, query_transforms=("shear",))
  assert not np.allclose(sheared, x)
  both = augment.query_view(KEY, x, LAYOUT, query_transforms=("shear", "crop"),
                            crop_pad_ratio=0.0)
  np.testing.assert_array_equal(both, sheared)
  np.testing.assert_array_equal(augment.query_view(KEY, x, LAYOUT, query_transforms=()), x)
  # Order is fixed (ACTIONLET_TRANSFORMS), not the order the config lists them in.
  a = augment.query_view(KEY, x, LAYOUT, query_transforms=("crop", "shear"))
  b = augment.query_view(KEY, x, LAYOUT, query_transforms=("shear", "crop"))
  np.testing.assert_array_equal(a, b)


def test_phase1_key_view_defaults_to_the_key_view_with_bone_scale_and_may_move_frames():
  x = jnp.asarray(_batch())
  phase1 = augment.key_view(KEY, x, LAYOUT, phase1=True)
  # The default phase-1 key view is the key view plus a body shape: the same draws per fold.
  np.testing.assert_array_equal(
      phase1, augment.key_view(KEY, x, LAYOUT, key_transforms=("shear", "bone_scale")))
  assert not np.allclose(phase1, augment.key_view(KEY, x, LAYOUT))
  np.testing.assert_array_equal(
      augment.key_view(KEY, x, LAYOUT, phase1=True, phase1_key_transforms=("shear",)),
      augment.key_view(KEY, x, LAYOUT))
  cropped = augment.key_view(KEY, x, LAYOUT, phase1=True, phase1_key_transforms=("shear", "crop"))
  # The crop moves frames; with a zero pad ratio it is the identity, so only the shear is left.
  assert not np.allclose(cropped, augment.key_view(KEY, x, LAYOUT))
  np.testing.assert_array_equal(
      augment.key_view(KEY, x, LAYOUT, phase1=True, phase1_key_transforms=("shear", "crop"),
                       crop_pad_ratio=0.0), augment.key_view(KEY, x, LAYOUT))


def test_sample_flip_mirrors_whole_samples():
  x = jnp.asarray(_batch())
  np.testing.assert_array_equal(augment.sample_flip(KEY, x, LAYOUT, sample_flip_p=0.0), x)
  mirrored = np.asarray(augment.sample_flip(KEY, x, LAYOUT, sample_flip_p=1.0))
  expected = np.asarray(x)[:, :, :, PERM]
  expected[:, 0] *= -1  # x negated, the joints swapped
  np.testing.assert_array_equal(mirrored, expected)
  np.testing.assert_array_equal(augment.sample_flip(KEY, mirrored, LAYOUT, sample_flip_p=1.0), x)
  # A reflection: every bone keeps its length, mirrored onto the other side's bone.
  bone = lambda y, a, b: np.linalg.norm(y[:, :, :, a] - y[:, :, :, b], axis=1)
  for a, b in LAYOUT.edges:
    np.testing.assert_allclose(bone(mirrored, PERM[a], PERM[b]), bone(np.asarray(x), a, b),
                               rtol=1e-6, atol=1e-6)
  # Absent bodies stay absent.
  np.testing.assert_array_equal(mirrored[[0, 2], ..., 1], 0)


def test_the_joint_swap_alone_is_no_new_sample_for_the_encoder(tmp_path):
  """Why sample_flip also negates x: the untrained encoder's pooled feature is invariant to the
  left/right joint swap (a symmetry of the graph, weights shared across joints), not to the
  mirror."""
  config = tiny_config(tmp_path)
  model = builder.build_model(config)
  x = np.asarray(_batch())[:, :, :config.data.frames]
  variables = model.init({"params": KEY, "dropout": KEY}, x[:1], train=False)
  feature = lambda y: np.asarray(model.apply(variables, jnp.asarray(y), train=False)["feature"])
  scale = np.abs(feature(x)).max()
  np.testing.assert_allclose(feature(x[:, :, :, PERM]), feature(x), atol=1e-5 * scale)
  mirrored = augment.sample_flip(KEY, jnp.asarray(x), LAYOUT, sample_flip_p=1.0)
  assert np.abs(feature(mirrored) - feature(x)).max() > 1e-2 * scale
