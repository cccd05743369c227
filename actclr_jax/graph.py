"""Skeleton layouts and the ST-GCN spatial-partition adjacency.

Joint indices are 0-based everywhere in code; the tables below are written
1-based, as the datasets document them, and converted once.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
  """A skeleton layout.

  Attributes:
    name: layout name.
    num_joints: V.
    parents: (V,) parent of each joint (bones as child -> parent); the centre is its own parent.
    center: the centre joint (root of the bone tree, the ST-GCN partition centre,
      and the joint the 50-frame preprocessing subtracts).
    shoulders: (left, right) joints whose difference view normalisation aligns with +x.
    parts: 5 body parts (trunk, left arm, right arm, left leg, right leg), each a tuple of joints.
    flip_pairs: left/right joint pairs swapped by a spatial flip.
  """

  name: str
  num_joints: int
  parents: tuple[int, ...]
  center: int
  shoulders: tuple[int, int]
  parts: tuple[tuple[int, ...], ...]
  flip_pairs: tuple[tuple[int, int], ...]

  @property
  def edges(self) -> tuple[tuple[int, int], ...]:
    """Bones as (child, parent), excluding the centre's self-loop."""
    return tuple((c, p) for c, p in enumerate(self.parents) if c != p)

  @property
  def flip_permutation(self) -> np.ndarray:
    """(V,) joint permutation that swaps left and right."""
    perm = np.arange(self.num_joints)
    for a, b in self.flip_pairs:
      perm[a], perm[b] = b, a
    return perm

  @property
  def part_index(self) -> np.ndarray:
    """(V,) index of the body part each joint belongs to."""
    index = np.full(self.num_joints, -1, dtype=np.int32)
    for p, joints in enumerate(self.parts):
      index[list(joints)] = p
    return index

  def adjacency(self) -> np.ndarray:
    """ST-GCN spatial-partition adjacency, (3, V, V) float32: root, centripetal, centrifugal.

    Hop 1 with self-loops, normalised so that every column of A.sum(0) sums to 1;
    A[k, v, w] weighs input joint v for output joint w.
    """
    return spatial_partition_adjacency(self.num_joints, self.edges, self.center)

  def smoothing_matrix(self) -> np.ndarray:
    """(V, V) degree-normalised adjacency with self-loops (the G of Eq. 5)."""
    return self.adjacency().sum(0)

  def part_average_matrix(self) -> np.ndarray:
    """(V, V) matrix that replaces each joint's value by its body part's mean."""
    index = self.part_index
    same = (index[:, None] == index[None, :]).astype(np.float32)
    return same / same.sum(0, keepdims=True)


def bone_paths(parents, center: int) -> np.ndarray:
  """(V, V) float32: [j, k] = 1 where bone k (joint k -> parents[k]) lies on the path from the
  centre to joint j, so that x_j = x_centre + sum_k [j, k] (x_k - x_parents[k])."""
  num_joints = len(parents)
  paths = np.zeros((num_joints, num_joints), np.float32)
  for joint in range(num_joints):
    k = joint
    for _ in range(num_joints):
      if k == center:
        break
      paths[joint, k] = 1.0
      k = parents[k]
    else:
      raise ValueError(f"joint {joint}'s parents never reach the centre joint {center}")
  return paths


def _one_based(pairs):
  return tuple((a - 1, b - 1) for a, b in pairs)


def _layout(name, num_joints, child_parent_1b, center_1b, shoulders_1b, parts_1b, flips_1b):
  parents = list(range(num_joints))
  for c, p in _one_based(child_parent_1b):
    parents[c] = p
  return Layout(
      name=name,
      num_joints=num_joints,
      parents=tuple(parents),
      center=center_1b - 1,
      shoulders=(shoulders_1b[0] - 1, shoulders_1b[1] - 1),
      parts=tuple(tuple(j - 1 for j in part) for part in parts_1b),
      flip_pairs=_one_based(flips_1b),
  )


# NTU RGB+D / PKU-MMD (Kinect v2, 25 joints); parents as in NOTES.md.
NTU = _layout(
    "ntu", 25,
    [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
     (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
     (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)],
    center_1b=21,
    shoulders_1b=(5, 9),
    parts_1b=[(1, 2, 3, 4, 21), (5, 6, 7, 8, 22, 23), (9, 10, 11, 12, 24, 25),
              (13, 14, 15, 16), (17, 18, 19, 20)],
    flips_1b=[(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20),
              (22, 24), (23, 25)],
)

# Kinect v1 in NW-UCLA order: hip centre, spine, shoulder centre, head, left arm (4),
# right arm (4), left leg (4), right leg (4).
KINECT_V1 = _layout(
    "kinect_v1", 20,
    [(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
     (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19)],
    center_1b=3,
    shoulders_1b=(5, 9),
    parts_1b=[(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)],
    flips_1b=[(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20)],
)

# MSR Action3D order (../shared/data/README.md): 1/2 shoulders, 3 neck, 4 spine, 5/6 hips,
# 7 hip centre, 8/9 elbows, 10/11 wrists, 12/13 hands, 14/15 knees, 16/17 ankles,
# 18/19 feet, 20 head. Rooted at the neck, the analogue of NTU's spine-at-shoulders.
MSR = _layout(
    "msr", 20,
    [(20, 3), (1, 3), (2, 3), (8, 1), (10, 8), (12, 10), (9, 2), (11, 9), (13, 11), (4, 3),
     (7, 4), (5, 7), (6, 7), (14, 5), (15, 6), (16, 14), (17, 15), (18, 16), (19, 17)],
    center_1b=3,
    shoulders_1b=(1, 2),
    parts_1b=[(3, 4, 7, 20), (1, 8, 10, 12), (2, 9, 11, 13), (5, 14, 16, 18), (6, 15, 17, 19)],
    flips_1b=[(1, 2), (8, 9), (10, 11), (12, 13), (5, 6), (14, 15), (16, 17), (18, 19)],
)

LAYOUTS = {layout.name: layout for layout in (NTU, KINECT_V1, MSR)}


def get_layout(name: str) -> Layout:
  """Returns the layout called `name` ('ntu', 'kinect_v1' or 'msr')."""
  if name not in LAYOUTS:
    raise ValueError(f"Unknown skeleton layout {name!r}; known layouts: {sorted(LAYOUTS)}")
  return LAYOUTS[name]


def hop_distance(num_joints: int, edges, max_hop: int = 1) -> np.ndarray:
  """(V, V) graph hop distance, inf beyond max_hop."""
  adjacency = np.eye(num_joints)
  for i, j in edges:
    adjacency[i, j] = adjacency[j, i] = 1
  distance = np.full((num_joints, num_joints), np.inf)
  reach = [np.linalg.matrix_power(adjacency, d) > 0 for d in range(max_hop + 1)]
  for d in range(max_hop, -1, -1):
    distance[reach[d]] = d
  return distance


@functools.lru_cache(maxsize=None)
def spatial_partition_adjacency(num_joints: int, edges, center: int) -> np.ndarray:
  """ST-GCN 'spatial' strategy, max hop 1: (3, V, V) root / centripetal / centrifugal."""
  distance = hop_distance(num_joints, edges, max_hop=1)
  connected = (distance <= 1).astype(np.float64)
  normalized = connected / connected.sum(0, keepdims=True)
  to_center = hop_distance(num_joints, edges, max_hop=num_joints)[:, center]
  root, centripetal, centrifugal = (np.zeros_like(normalized) for _ in range(3))
  for j in range(num_joints):
    for i in range(num_joints):
      if not connected[j, i]:
        continue
      if to_center[j] == to_center[i]:
        root[j, i] = normalized[j, i]
      elif to_center[j] > to_center[i]:
        centripetal[j, i] = normalized[j, i]
      else:
        centrifugal[j, i] = normalized[j, i]
  return np.stack([root, centripetal, centrifugal]).astype(np.float32)
