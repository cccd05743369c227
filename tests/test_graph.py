"""Skeleton layouts: bone trees, parts, flips and the ST-GCN adjacency."""

import numpy as np
import pytest

from actclr_jax import graph

LAYOUTS = sorted(graph.LAYOUTS)


@pytest.mark.parametrize("name", LAYOUTS)
def test_bones_form_a_tree_reaching_every_joint(name):
  layout = graph.get_layout(name)
  assert len(layout.edges) == layout.num_joints - 1
  for joint in range(layout.num_joints):
    seen, current = set(), joint
    while current != layout.center:
      assert current not in seen, f"cycle through joint {current}"
      seen.add(current)
      current = layout.parents[current]
  assert layout.parents[layout.center] == layout.center


@pytest.mark.parametrize("name", LAYOUTS)
def test_bone_paths_rebuild_the_skeleton_from_its_bones(name):
  layout = graph.get_layout(name)
  x = np.random.default_rng(0).normal(size=(layout.num_joints, 3))
  bones = x - x[list(layout.parents)]
  paths = graph.bone_paths(layout.parents, layout.center)
  np.testing.assert_allclose(x[layout.center] + paths @ bones, x, atol=1e-12)


def test_bone_paths_reject_parents_that_miss_the_centre():
  with pytest.raises(ValueError, match="joint 2's parents never reach the centre joint 0"):
    graph.bone_paths([0, 0, 3, 2], center=0)


@pytest.mark.parametrize("name", LAYOUTS)
def test_parts_cover_every_joint_exactly_once(name):
  layout = graph.get_layout(name)
  assert len(layout.parts) == 5
  joints = [j for part in layout.parts for j in part]
  assert sorted(joints) == list(range(layout.num_joints))
  assert (layout.part_index >= 0).all()


@pytest.mark.parametrize("name", LAYOUTS)
def test_flip_twice_is_identity_and_swaps_sides(name):
  layout = graph.get_layout(name)
  perm = layout.flip_permutation
  np.testing.assert_array_equal(perm[perm], np.arange(layout.num_joints))
  assert (perm != np.arange(layout.num_joints)).sum() == 2 * len(layout.flip_pairs)
  # The left arm maps onto the right arm.
  assert sorted(perm[list(layout.parts[1])]) == sorted(layout.parts[2])


@pytest.mark.parametrize("name", LAYOUTS)
def test_adjacency_columns_are_normalised(name):
  layout = graph.get_layout(name)
  a = layout.adjacency()
  assert a.shape == (3, layout.num_joints, layout.num_joints)
  np.testing.assert_allclose(a.sum(axis=(0, 1)), 1.0, rtol=1e-6)
  assert (a >= 0).all()
  # Hop 1: non-zero exactly on bones and self-loops.
  support = a.sum(0) > 0
  expected = np.eye(layout.num_joints, dtype=bool)
  for c, p in layout.edges:
    expected[c, p] = expected[p, c] = True
  np.testing.assert_array_equal(support, expected)


def test_ntu_partition_subsets_follow_distance_to_centre():
  layout = graph.NTU
  a = layout.adjacency()
  # Self-loops are in the root subset.
  assert np.all(np.diag(a[0]) > 0)
  # A[k, v, w] weighs input v for output w. The head (3) is farther from the centre (20)
  # than the neck (2): head -> neck flows towards the centre (centripetal), neck -> head away.
  neck, head = 2, 3
  assert a[1, head, neck] > 0 and a[2, neck, head] > 0
  assert a[0, neck, head] == 0 and a[1, neck, head] == 0


def test_unknown_layout_names_the_choices():
  with pytest.raises(ValueError, match="kinect_v1"):
    graph.get_layout("coco")
