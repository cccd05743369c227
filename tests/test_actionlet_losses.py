"""Eq. 3-5 (actionlet), Eq. 1 and 9 (losses), and the memory bank ring buffer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actclr_jax import actionlet, augment, losses


def test_activation_map_matches_a_hand_computed_case():
  # One sample, one body, C = 2 channels, T' = 2 frames, V = 3 joints.
  h = np.array([[[1., 0., 2.], [0., 1., 0.]],     # channel 0: (T', V)
                [[0., 3., 0.], [1., 1., 1.]]])    # channel 1
  grad = np.zeros_like(h)
  grad[0] = 0.6   # mean over (t, v) = 0.6 -> alpha_0 = 0.6
  grad[1, 0, 0] = -1.2  # mean -0.2; ReLU first: mean(relu) = 0 -> alpha_1 = 0
  g = np.array([[0.5, 0.5, 0.], [0.5, 0.5, 0.], [0., 0., 1.]])
  cam = actionlet.activation_map(jnp.asarray(h[None, None]), jnp.asarray(grad[None, None]),
                                 jnp.asarray(g), grad_activation="relu")
  # ReLU(0.6 * h_0) = [[0.6, 0, 1.2], [0, 0.6, 0]], then A[t, w] = sum_v A[t, v] G[v, w].
  expected = np.array([[0.3, 0.3, 1.2], [0.3, 0.3, 0.]])
  np.testing.assert_allclose(cam[0, 0], expected, rtol=1e-6)
  # Without the ReLU on the gradients (Grad-CAM), alpha_1 = -0.2 and the map changes.
  cam_id = actionlet.activation_map(jnp.asarray(h[None, None]), jnp.asarray(grad[None, None]),
                                    jnp.asarray(g), grad_activation="identity")
  raw = np.maximum(0.6 * h[0] - 0.2 * h[1], 0)  # [[0.6, 0, 1.2], [0, 0.4, 0]]
  np.testing.assert_allclose(cam_id[0, 0], raw @ g, rtol=1e-6)


def test_actionlet_scaling_threshold_and_resizing():
  h = jnp.zeros((1, 1, 1, 2, 3)).at[0, 0, 0, :, 1].set(1.0)  # only joint 1 is active
  grad = -jnp.ones_like(h) * 0 + 1.0
  mask_dense, mask_input = actionlet.actionlet(h, grad, jnp.eye(3), threshold=0.5, frames=4)
  np.testing.assert_array_equal(mask_dense[0, 0], [[0, 1, 0], [0, 1, 0]])
  assert mask_input.shape == (1, 4, 3, 1)
  np.testing.assert_array_equal(mask_input[0, :, :, 0], [[0, 1, 0]] * 4)


def test_dissimilarity_gradient_is_the_gradient_of_minus_cosine():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(4, 3)))
  head = lambda h: h.mean(axis=(1, 3, 4)) @ w  # GAP then a linear projector
  dense = jnp.asarray(rng.normal(size=(2, 1, 4, 2, 5)))
  anchor_z = jnp.asarray(rng.normal(size=3))
  grad = actionlet.dissimilarity_gradient(head, dense, anchor_z)
  # Per-sample: perturbing sample 1 does not change sample 0's gradient.
  single = actionlet.dissimilarity_gradient(head, dense[:1], anchor_z)
  np.testing.assert_allclose(grad[:1], single, rtol=1e-5)
  eps = 1e-3
  bump = jnp.zeros_like(dense).at[0, 0, 2, 1, 3].set(eps)
  f = lambda d: -actionlet.cosine_similarity(head(d), anchor_z)[0]
  numeric = (f(dense + bump) - f(dense - bump)) / (2 * eps)
  np.testing.assert_allclose(grad[0, 0, 2, 1, 3], numeric, rtol=1e-2)


def test_iou():
  a = np.array([[1, 1, 0, 0]], bool)
  b = np.array([[0, 1, 1, 0]], bool)
  np.testing.assert_allclose(actionlet.iou(a, b), [1 / 3])


def test_info_nce_known_value():
  z = jnp.eye(4)[:1]                  # query = key = e0
  bank = jnp.eye(4)[1:]               # three negatives orthogonal to the query
  t = 0.5
  expected = -np.log(np.exp(1 / t) / (np.exp(1 / t) + 3))
  np.testing.assert_allclose(losses.info_nce(z, z, bank, t), expected, rtol=1e-6)


def test_class_split_sums_to_info_nce_and_hits_the_floor_when_the_class_is_indistinct():
  rng = np.random.default_rng(3)
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  q, k, bank = norm(rng.normal(size=(4, 8))), norm(rng.normal(size=(4, 8))), norm(
      rng.normal(size=(10, 8)))
  valid = rng.random((4, 10)) > 0.2
  same = rng.random((4, 10)) > 0.5
  split = losses.class_split_info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(bank), 0.2,
                                      jnp.asarray(valid), jnp.asarray(same))
  # The two terms add up to InfoNCE exactly, per query and so on the mean.
  np.testing.assert_allclose(float(split["class_term"] + split["instance_term"]),
                             float(losses.info_nce(q, k, bank, 0.2, jnp.asarray(valid))),
                             rtol=1e-5)
  assert float(split["class_term"]) > 0.0 and float(split["instance_term"]) > 0.0
  np.testing.assert_allclose(float(split["same_class_keys"]), (valid & same).sum(1).mean())
  # Key e0; three same-class entries equal to the key, two other-class ones orthogonal to it:
  # the instance term is log(1 + 3), the floor, and the class term the cost of the other two.
  e = np.eye(4, dtype=np.float32)
  z = jnp.asarray(e[:1])
  bank = jnp.asarray(np.stack([e[0], e[0], e[0], e[1], e[2]]))
  same = jnp.asarray([[True, True, True, False, False]])
  split = losses.class_split_info_nce(z, z, bank, 0.5, jnp.ones((1, 5), bool), same)
  np.testing.assert_allclose(float(split["instance_term"]), np.log(4.0), rtol=1e-6)
  np.testing.assert_allclose(float(split["instance_floor"]), np.log(4.0), rtol=1e-6)
  np.testing.assert_allclose(float(split["class_term"]),
                             np.log((4 * np.exp(2.0) + 2) / (4 * np.exp(2.0))), rtol=1e-6)
  # Leaving a same-class entry out (its own stale key) lowers the count and the floor.
  valid = jnp.asarray([[False, True, True, True, True]])
  split = losses.class_split_info_nce(z, z, bank, 0.5, valid, same)
  np.testing.assert_allclose(float(split["same_class_keys"]), 2.0)
  np.testing.assert_allclose(float(split["instance_term"]), np.log(3.0), rtol=1e-6)


def test_similarity_by_bank_age_splits_the_ring_buffer_at_its_pointer():
  # Bank of 8, pointer 3: rows 2, 1 were written last (ages 0, 1), rows 4, 3 first (ages 6, 7).
  e = np.eye(4, dtype=np.float32)
  bank = jnp.asarray(np.stack([e[1], e[0], e[0], e[2], e[2], e[3], e[3], e[3]]))
  z = jnp.asarray(e[:1])
  by_age = losses.similarity_by_bank_age(z, bank, jnp.ones((1, 8), bool), jnp.asarray(3))
  # Parts by age: rows (2, 1), (0, 7), (6, 5), (4, 3); the query is e0.
  np.testing.assert_allclose(by_age, [1.0, 0.0, 0.0, 0.0])
  by_age = losses.similarity_by_bank_age(jnp.asarray(e[2:3]), bank, jnp.ones((1, 8), bool),
                                         jnp.asarray(3))
  np.testing.assert_allclose(by_age, [0.0, 0.0, 0.0, 1.0])
  # Invalid entries leave their part's mean; a part with none gives NaN. Uneven parts: 8 in 3.
  valid = jnp.asarray([[True, False, True, False, False, True, True, True]])
  by_age = losses.similarity_by_bank_age(z, bank, valid, jnp.asarray(3))
  np.testing.assert_allclose(by_age[0], 1.0)
  assert np.isnan(by_age[3])
  by_age = losses.similarity_by_bank_age(z, bank, jnp.ones((1, 8), bool), jnp.asarray(3), parts=3)
  np.testing.assert_allclose(by_age, [2 / 3, 0.0, 0.0])  # ages 0-2, 3-5, 6-7


def test_similarity_mining_is_cross_entropy_of_bank_distributions():
  rng = np.random.default_rng(1)
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  q, k, bank = norm(rng.normal(size=(3, 8))), norm(rng.normal(size=(3, 8))), norm(
      rng.normal(size=(16, 8)))
  softmax = lambda s: np.exp(s - s.max(-1, keepdims=True)) / np.exp(
      s - s.max(-1, keepdims=True)).sum(-1, keepdims=True)
  p_k, p_q = softmax(k @ bank.T / 0.04), softmax(q @ bank.T / 0.1)
  expected = -(p_k * np.log(p_q)).sum(-1).mean()
  got = losses.similarity_mining(jnp.asarray(q), jnp.asarray(k), jnp.asarray(bank), 0.1, 0.04)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # No gradient flows into the key side.
  grad_k = jax.grad(lambda kk: losses.similarity_mining(jnp.asarray(q), kk, jnp.asarray(bank),
                                                        0.1, 0.04))(jnp.asarray(k))
  assert not np.asarray(grad_k).any()


def test_pairwise_similarity_averages_distinct_pairs():
  z = jnp.asarray([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
  # pairs (0, 1) 0.6, (0, 2) -1, (1, 2) -0.6; each vector's similarity to itself is left out.
  np.testing.assert_allclose(float(losses.pairwise_similarity(z)), (0.6 - 1.0 - 0.6) / 3,
                             rtol=1e-6)
  np.testing.assert_allclose(float(losses.pairwise_similarity(jnp.tile(z[:1], (4, 1)))), 1.0,
                             rtol=1e-6)


def test_center_removes_the_direction_the_batch_shares():
  z = jnp.asarray([[1.0, 2.0], [3.0, -2.0], [2.0, 3.0]])
  np.testing.assert_allclose(np.asarray(losses.center(z)),
                             [[-1.0, 1.0], [1.0, -3.0], [0.0, 2.0]], atol=1e-6)
  shifted = z + jnp.asarray([[40.0, -7.0]])
  np.testing.assert_allclose(np.asarray(losses.center(shifted)), np.asarray(losses.center(z)),
                             atol=1e-5)
  # A cone (a large shared direction) becomes vectors whose pairwise cosines average below 0.
  cone = losses.l2_normalize(shifted)
  assert float(losses.pairwise_similarity(cone)) > 0.9
  assert float(losses.pairwise_similarity(losses.l2_normalize(losses.center(shifted)))) < 0.0


def test_negative_similarity_averages_and_maxes_over_valid_entries_only():
  z = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  bank = jnp.asarray([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
  valid = jnp.asarray([[False, True, True], [True, True, False]])
  mean, hardest = losses.negative_similarity(z, bank, valid)
  # query 0 sees 0.6 and -1 (its own key, similarity 1, left out); query 1 sees 0 and 0.8.
  np.testing.assert_allclose(float(mean), (0.6 - 1.0 + 0.0 + 0.8) / 4, rtol=1e-6)
  np.testing.assert_allclose(float(hardest), (0.6 + 0.8) / 2, rtol=1e-6)


def test_ring_buffer_wraps_around():
  bank = jnp.zeros((5, 2))
  index = jnp.full((5,), -1, jnp.int32)
  keys = jnp.arange(8.0).reshape(4, 2) + 1
  new, new_index, pointer = losses.enqueue(bank, index, jnp.asarray(3), keys,
                                           jnp.array([10, 11, 12, 13]))
  assert int(pointer) == 2
  np.testing.assert_array_equal(new[3], keys[0])
  np.testing.assert_array_equal(new[4], keys[1])
  np.testing.assert_array_equal(new[0], keys[2])
  np.testing.assert_array_equal(new[1], keys[3])
  np.testing.assert_array_equal(new_index, [12, 13, -1, 10, 11])
  assert not np.asarray(new[2]).any()
  # First in, first out: the next write overwrites the oldest entry (row 2, then 3).
  new, new_index, pointer = losses.enqueue(new, new_index, pointer, jnp.full((2, 2), 9.0),
                                           jnp.array([20, 21]))
  np.testing.assert_array_equal(new[2:4], 9.0)
  np.testing.assert_array_equal(new_index, [12, 13, 20, 21, 11])
  assert int(pointer) == 4


def test_own_keys_in_the_bank_are_excluded_from_both_losses():
  """A constructed case: query 0's bank holds a stale copy of its own key (row 0, index 7), the
  exact direction the query points in. Excluded, the losses equal those of a bank without that
  row; included, InfoNCE treats the copy as a hard negative."""
  rng = np.random.default_rng(3)
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  q = norm(rng.normal(size=(2, 8)))
  k = norm(q + 0.1 * rng.normal(size=(2, 8)))
  others = norm(rng.normal(size=(6, 8)))
  bank = np.concatenate([k[:1], others])  # row 0: query 0's own key from an earlier epoch
  bank_index = jnp.array([7, 1, 2, 3, 4, 5, 6])
  sample_index = jnp.array([7, 9])  # query 1 (sample 9) has no copy in the bank
  valid = losses.bank_mask(bank_index, sample_index)
  np.testing.assert_array_equal(np.asarray(valid)[:, 0], [False, True])
  assert np.asarray(valid)[:, 1:].all()
  q, k, bank = jnp.asarray(q), jnp.asarray(k), jnp.asarray(bank)
  for loss in (lambda q, k, b, v=None: losses.info_nce(q, k, b, 0.07, valid=v),
               lambda q, k, b, v=None: losses.similarity_mining(q, k, b, 0.1, 0.04, valid=v)):
    masked0 = loss(q[:1], k[:1], bank, valid[:1])
    without_row = loss(q[:1], k[:1], bank[1:])
    np.testing.assert_allclose(masked0, without_row, rtol=1e-5)
    # Query 1 is untouched by the mask.
    np.testing.assert_allclose(loss(q[1:], k[1:], bank, valid[1:]), loss(q[1:], k[1:], bank),
                               rtol=1e-6)
    assert np.isfinite(float(loss(q, k, bank, valid)))
    assert np.isfinite(np.asarray(jax.grad(lambda z: loss(z, k, bank, valid))(q))).all()
  assert float(losses.info_nce(q[:1], k[:1], bank, 0.07)) > float(
      losses.info_nce(q[:1], k[:1], bank, 0.07, valid[:1])) + 0.5


def test_unfilled_bank_rows_are_excluded_when_asked():
  """Rows still holding the bank's initial random vectors (index -1) are left out with
  exclude_unfilled: the losses equal those of the filled rows alone; with no filled row, both
  losses are constant (no gradient) instead of pushing the query from random vectors."""
  rng = np.random.default_rng(4)
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  q = jnp.asarray(norm(rng.normal(size=(2, 8))))
  k = jnp.asarray(norm(np.asarray(q) + 0.1 * rng.normal(size=(2, 8))))
  bank = jnp.asarray(norm(rng.normal(size=(5, 8))))
  bank_index = jnp.array([3, 4, -1, -1, -1])
  sample_index = jnp.array([0, 1])
  valid = losses.bank_mask(bank_index, sample_index, exclude_unfilled=True)
  np.testing.assert_array_equal(np.asarray(valid), [[1, 1, 0, 0, 0]] * 2)
  np.testing.assert_array_equal(np.asarray(losses.bank_mask(bank_index, sample_index)),
                                np.ones((2, 5), bool))
  for loss in (lambda q, b, v=None: losses.info_nce(q, k, b, 0.07, valid=v),
               lambda q, b, v=None: losses.similarity_mining(q, k, b, 0.1, 0.04, valid=v)):
    np.testing.assert_allclose(loss(q, bank, valid), loss(q, bank[:2]), rtol=1e-5)
    empty = losses.bank_mask(jnp.full((5,), -1), sample_index, exclude_unfilled=True)
    grad = jax.grad(lambda z: loss(z, bank, empty))(q)
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_map_is_relu_of_the_weighted_features_then_smoothed(activation):
  """Random signed features, so that some weighted sums are negative: the map is the numpy
  reference ReLU(sum_c alpha_c h_c) G, not the sum itself (nor G applied before the ReLU)."""
  rng = np.random.default_rng(2)
  h = rng.normal(size=(3, 2, 8, 4, 25))
  grad = rng.normal(size=h.shape)
  g = rng.uniform(size=(25, 25))
  cam = np.asarray(actionlet.activation_map(jnp.asarray(h), jnp.asarray(grad), jnp.asarray(g),
                                            grad_activation=activation))
  sigma = (lambda a: np.maximum(a, 0)) if activation == "relu" else (lambda a: a)
  alpha = sigma(grad).mean(axis=(-2, -1))  # (N, M, C)
  pre = np.einsum("nmc,nmctv->nmtv", alpha, h)
  assert (pre < 0).mean() > 0.1 and (pre > 0).mean() > 0.1
  np.testing.assert_allclose(cam, np.maximum(pre, 0) @ g, rtol=1e-4, atol=1e-5)


def test_normalize_per_sample_known_values_and_per_sample_invariance():
  # (N, M, T', V) = (2, 1, 2, 2): each sample's map is scaled by its own range.
  cam = np.array([[[[1., 3.], [5., 9.]]], [[[0., 0.], [0., 2.]]]], np.float32)
  out = np.asarray(actionlet.normalize_per_sample(jnp.asarray(cam)))
  np.testing.assert_allclose(out, [[[[0, 0.25], [0.5, 1]]], [[[0, 0], [0, 1]]]], rtol=1e-6)
  # A positive affine change of one sample's map changes neither its result nor the other's.
  moved = cam.copy()
  moved[0] = moved[0] * 7 + 3
  np.testing.assert_allclose(actionlet.normalize_per_sample(jnp.asarray(moved)), out,
                             rtol=1e-6, atol=1e-7)


def test_normalize_per_sample_spans_the_bodies_and_skips_absent_ones():
  # One sample, M = 3: an active body (0), an idle one (1) and an absent one (2).
  cam = np.zeros((1, 3, 2, 2), np.float32)
  cam[0, 0] = [[0.0, 8.0], [4.0, 2.0]]
  cam[0, 1] = [[1.0, 1.5], [1.0, 2.0]]  # scaled on its own, 2.0 would be its actionlet
  cam[0, 2] = [[30.0, 0.0], [0.0, 0.0]]  # an absent body's activations mean nothing
  present = jnp.array([[1.0, 1.0, 0.0]])
  out = np.asarray(actionlet.normalize_per_sample(jnp.asarray(cam), present))
  np.testing.assert_allclose(out[0, 0], [[0, 1], [0.5, 0.25]], rtol=1e-6)
  np.testing.assert_allclose(out[0, 1], [[0.125, 0.1875], [0.125, 0.25]], rtol=1e-6)
  np.testing.assert_array_equal(out[0, 2], 0)
  # A sample without any body (an eval batch's zero padding) gets an empty map, not NaN.
  empty = np.asarray(actionlet.normalize_per_sample(jnp.asarray(cam), jnp.zeros((1, 3))))
  np.testing.assert_array_equal(empty, 0)


def test_actionlet_of_idle_and_absent_bodies_is_empty():
  # Dense map h = the cam itself on one channel (alpha = 1, G = identity): body 0 moves,
  # body 1 is idle (its activations are low), body 2 is absent.
  cam = np.zeros((1, 3, 1, 2, 2), np.float32)
  cam[0, 0, 0] = [[0.0, 8.0], [4.0, 2.0]]
  cam[0, 1, 0] = [[1.0, 1.5], [1.0, 2.0]]
  cam[0, 2, 0] = [[30.0, 0.0], [0.0, 0.0]]
  mask, mask_input = actionlet.actionlet(jnp.asarray(cam), jnp.ones_like(jnp.asarray(cam)),
                                         jnp.eye(2), threshold=0.5, frames=2,
                                         present=jnp.array([[1.0, 1.0, 0.0]]))
  np.testing.assert_array_equal(np.asarray(mask)[0], [[[0, 1], [0, 0]], [[0, 0], [0, 0]],
                                                      [[0, 0], [0, 0]]])
  assert np.asarray(mask_input)[0, ..., 1:].sum() == 0


def test_relocate_moves_the_actionlet_and_keeps_its_size():
  """actionlet.placement=random: each sample's mask moves to other joints and frames, the same
  way in both resolutions; its area, its number of active frames and joints, and the empty
  masks of absent bodies stay."""
  n, dense_frames, frames, joints = 64, 4, 16, 20
  mask_dense = np.zeros((n, 2, dense_frames, joints), np.float32)
  mask_dense[:, 0, 1:3, 5:8] = 1.0  # body 0: joints 5-7 in dense frames 1-2; body 1 absent
  mask_input = np.repeat(mask_dense.transpose(0, 2, 3, 1), frames // dense_frames, axis=1)
  dense, moved = map(np.asarray, actionlet.relocate(jax.random.key(0), jnp.asarray(mask_dense),
                                                    jnp.asarray(mask_input)))
  np.testing.assert_array_equal(dense.sum(axis=(1, 2, 3)), 6)
  np.testing.assert_array_equal(moved.sum(axis=(1, 2, 3)), 24)
  assert dense[:, 1].sum() == 0 and moved[..., 1].sum() == 0
  np.testing.assert_array_equal(dense[:, 0].any(axis=2).sum(axis=1), 2)  # two frames
  np.testing.assert_array_equal(dense[:, 0].any(axis=1).sum(axis=1), 3)  # three joints
  # The input-resolution mask is the dense one, frame by frame.
  np.testing.assert_array_equal(
      moved, np.repeat(dense.transpose(0, 2, 3, 1), frames // dense_frames, axis=1))
  # The place changes from sample to sample, and rarely stays where it was.
  assert len({dense[i, 0].tobytes() for i in range(n)}) > n // 2
  assert np.mean((dense[:, 0] * mask_dense[:, 0]).sum(axis=(1, 2)) == 6) < 0.1


def test_borrow_gives_each_sample_the_next_ones_actionlet_on_its_own_bodies():
  """actionlet.placement=other_sample: sample i gets sample i+1's masks (the last the first's),
  with nothing on bodies sample i does not have."""
  mask_dense = np.zeros((3, 2, 2, 4), np.float32)
  for i in range(3):
    mask_dense[i, :, :, i] = 1.0  # sample i: joint i, both bodies
  mask_input = np.repeat(mask_dense.transpose(0, 2, 3, 1), 2, axis=1)
  present = np.array([[1, 1], [1, 0], [1, 1]], np.float32)  # sample 1 has one body
  dense, moved = map(np.asarray, actionlet.borrow(jnp.asarray(mask_dense), jnp.asarray(mask_input),
                                                  jnp.asarray(present)))
  np.testing.assert_array_equal(dense[0], mask_dense[1])
  np.testing.assert_array_equal(dense[2], mask_dense[0])
  np.testing.assert_array_equal(dense[1, 0], mask_dense[2, 0])
  assert dense[1, 1].sum() == 0 and moved[1, ..., 1].sum() == 0
  np.testing.assert_array_equal(moved, np.repeat(dense.transpose(0, 2, 3, 1), 2, axis=1))


def test_body_presence():
  x = np.zeros((2, 3, 4, 5, 2), np.float32)
  x[0, 1, 2, 3, 0] = 0.5
  x[1, ..., 1] = -1.0
  np.testing.assert_array_equal(augment.body_presence(jnp.asarray(x)), [[1, 0], [0, 1]])
