"""The synthetic skeleton's body: joints, rest pose, subjects, forward kinematics, idle motion,
cameras and sensor noise (NTU / Kinect v2 layout, metres, Kinect camera space).

`synthetic_actions.py` adds the actions on top; `synthetic.py` assembles the data set.
"""

from __future__ import annotations

import numpy as np

from actclr_jax import graph

LAYOUT = graph.get_layout("ntu")
NUM_JOINTS = 25
NUM_BODIES = 2
NUM_SUBJECTS = 10
NUM_VIEWS = 3
VIEW_YAW_DEG = (0.0, 45.0, -45.0)  # views 1, 2, 3

# 0-based joint indices (NTU joint j is index j - 1).
PELVIS, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 4, 5, 6, 7
R_SHOULDER, R_ELBOW, R_WRIST, R_HAND = 8, 9, 10, 11
L_HIP, L_KNEE, L_ANKLE, L_FOOT = 12, 13, 14, 15
R_HIP, R_KNEE, R_ANKLE, R_FOOT = 16, 17, 18, 19
SPINE_SHOULDER, L_TIP, L_THUMB, R_TIP, R_THUMB = 20, 21, 22, 23, 24

LEFT_FOREARM = frozenset({L_ELBOW, L_WRIST, L_HAND, L_TIP, L_THUMB})
RIGHT_FOREARM = frozenset({R_ELBOW, R_WRIST, R_HAND, R_TIP, R_THUMB})

# Rest pose in the body frame (x right, y up, z backward: the body faces -z), pelvis at the
# origin, metres, for a subject of scale 1. Arms hang straight; rest angles bend them.
_REST = np.zeros((NUM_JOINTS, 3))
for _joint, _pos in {
    PELVIS: (0.0, 0.0, 0.0), SPINE_MID: (0.0, 0.28, 0.0), SPINE_SHOULDER: (0.0, 0.50, 0.0),
    NECK: (0.0, 0.57, 0.0), HEAD: (0.0, 0.70, 0.0),
    R_SHOULDER: (0.17, 0.48, 0.0), R_ELBOW: (0.17, 0.22, 0.0), R_WRIST: (0.17, -0.02, 0.0),
    R_HAND: (0.17, -0.09, 0.0), R_THUMB: (0.165, -0.12, -0.035), R_TIP: (0.17, -0.17, 0.0),
    R_HIP: (0.08, 0.0, 0.0), R_KNEE: (0.085, -0.39, 0.0), R_ANKLE: (0.09, -0.78, 0.0),
    R_FOOT: (0.10, -0.83, -0.09),
}.items():
  _REST[_joint] = _pos
for _right, _left in LAYOUT.flip_pairs:
  _right, _left = (_right, _left) if _REST[_right, 0] > 0 else (_left, _right)
  _REST[_left] = _REST[_right] * (-1.0, 1.0, 1.0)
del _joint, _pos, _right, _left


def _fk_tree(root: int = PELVIS) -> tuple[np.ndarray, tuple[int, ...]]:
  """The layout's bone tree re-rooted at the pelvis: (V,) parents and a parent-first order."""
  neighbours = {v: [] for v in range(NUM_JOINTS)}
  for c, p in LAYOUT.edges:
    neighbours[c].append(p)
    neighbours[p].append(c)
  parents = np.full(NUM_JOINTS, -1)
  parents[root] = root
  order = [root]
  for v in order:
    for w in sorted(neighbours[v]):
      if parents[w] < 0:
        parents[w] = v
        order.append(w)
  return parents, tuple(order)


_FK_PARENT, _FK_ORDER = _fk_tree()
_FK_INNER = frozenset(int(p) for v, p in enumerate(_FK_PARENT) if v != p)  # joints with children
_REST_OFFSETS = _REST - _REST[_FK_PARENT]
_HIPS = (L_HIP, R_HIP)
_ARM_BONES = frozenset(LEFT_FOREARM | RIGHT_FOREARM)
_TORSO_BONES = frozenset({SPINE_MID, SPINE_SHOULDER, NECK, HEAD})
# Kinect tracks hands, fingers and feet worse than the trunk.
_NOISE_SCALE = np.ones(NUM_JOINTS)
_NOISE_SCALE[[L_HAND, R_HAND, L_TIP, L_THUMB, R_TIP, R_THUMB, L_FOOT, R_FOOT]] = 1.8
_SUBJECT_SEED = 20230601  # subjects are the same people whatever the sample seed

# --------------------------------------------------------------------------------------------
# Rotations and forward kinematics.


def euler_matrices(angles: np.ndarray) -> np.ndarray:
  """(..., 3) angles (rx, ry, rz) in radians -> (..., 3, 3) matrices Rz @ Ry @ Rx."""
  return np.moveaxis(_euler_soa(np.moveaxis(angles, -1, 0)), (0, 1), (-2, -1))


def _euler_soa(angles: np.ndarray) -> np.ndarray:
  """(3, ...) angles -> (3, 3, ...) matrices Rz @ Ry @ Rx, components first."""
  cx, cy, cz = np.cos(angles)
  sx, sy, sz = np.sin(angles)
  out = np.empty((3, 3) + angles.shape[1:], dtype=angles.dtype)
  out[0, 0] = cz * cy
  out[0, 1] = cz * sy * sx - sz * cx
  out[0, 2] = cz * sy * cx + sz * sx
  out[1, 0] = sz * cy
  out[1, 1] = sz * sy * sx + cz * cx
  out[1, 2] = sz * sy * cx - cz * sx
  out[2, 0] = -sy
  out[2, 1] = cy * sx
  out[2, 2] = cy * cx
  return out


def _matmul_soa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(3, 3, ...) @ (3, 3, ...) with components first."""
  return a[:, 0, None] * b[0][None] + a[:, 1, None] * b[1][None] + a[:, 2, None] * b[2][None]


def _rot_x(a: np.ndarray) -> np.ndarray:
  zeros = np.zeros_like(a)
  return euler_matrices(np.stack([a, zeros, zeros], -1))


def _rot_y(a: np.ndarray) -> np.ndarray:
  zeros = np.zeros_like(a)
  return euler_matrices(np.stack([zeros, a, zeros], -1))


def fk_soa(angles: np.ndarray, root: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """`forward_kinematics` with components first: (V, 3, n, T), (3, n, T) -> (V, 3, n, T).

  Structure-of-arrays keeps every elementwise operation on contiguous (n, T) blocks, which
  is several times faster in numpy than stacks of 3x3 matrices.
  """
  positions = np.empty(angles.shape, dtype=angles.dtype)
  positions[PELVIS] = root
  bones = np.ascontiguousarray(offsets.transpose(1, 2, 0)[..., None], dtype=angles.dtype)
  rotation = {PELVIS: _euler_soa(angles[PELVIS])}
  zeros = np.zeros_like(angles[PELVIS, 1])
  leg_frame = _euler_soa(np.stack([zeros, angles[PELVIS, 1], zeros]))
  for v in _FK_ORDER[1:]:
    p = _FK_PARENT[v]
    parent = rotation[p]
    bone = bones[v]  # (3, n, 1)
    positions[v] = positions[p] + parent[:, 0] * bone[0] + parent[:, 1] * bone[1] + (
        parent[:, 2] * bone[2])
    if v not in _FK_INNER:
      continue
    frame = leg_frame if v in _HIPS else parent
    local = angles[v]
    # Most joints do not rotate in most samples; skipping them halves the cost.
    rotation[v] = _matmul_soa(frame, _euler_soa(local)) if local.any() else frame
  return positions


def forward_kinematics(angles: np.ndarray, root: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """Body-frame joint positions from local joint rotations.

  A joint's rotation turns the bones to its children; the pelvis rotation turns the trunk.
  The legs hang from the pelvis's yaw only, so that leaning the trunk keeps them in place.

  Args:
    angles: (n, T, V, 3) local Euler angles (see `euler_matrices`).
    root: (n, T, 3) pelvis position.
    offsets: (n, V, 3) rest bone vectors, child minus FK parent (zero at the pelvis).

  Returns:
    (n, T, V, 3) positions.
  """
  positions = fk_soa(np.ascontiguousarray(angles.transpose(2, 3, 0, 1)),
                      np.ascontiguousarray(root.transpose(2, 0, 1)), offsets)
  return positions.transpose(2, 3, 0, 1)


# --------------------------------------------------------------------------------------------
# Subjects, idle motion, cameras and sensor noise.


def subject_offsets() -> np.ndarray:
  """(NUM_SUBJECTS, V, 3) rest bone vectors (child minus FK parent) of subjects 1..10."""
  rng = np.random.default_rng(_SUBJECT_SEED)
  scale = rng.uniform(0.88, 1.12, NUM_SUBJECTS)[:, None, None]
  torso, arms, legs, width = rng.uniform(0.94, 1.06, (4, NUM_SUBJECTS))
  offsets = np.repeat(_REST_OFFSETS[None], NUM_SUBJECTS, axis=0)
  offsets[:, sorted(_TORSO_BONES)] *= torso[:, None, None]
  offsets[:, sorted(_ARM_BONES)] *= arms[:, None, None]
  offsets[:, [L_KNEE, L_ANKLE, L_FOOT, R_KNEE, R_ANKLE, R_FOOT]] *= legs[:, None, None]
  offsets[:, [L_SHOULDER, R_SHOULDER, L_HIP, R_HIP], 0] *= width[:, None]
  return offsets * scale


def subject_style() -> np.ndarray:
  """(NUM_SUBJECTS,) each subject's habitual amplitude factor."""
  rng = np.random.default_rng([_SUBJECT_SEED, 1])
  return rng.uniform(0.88, 1.12, NUM_SUBJECTS)


def idle_motion(rng: np.random.Generator, n: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
  """Rest pose plus slow sway, breathing and drift: (V, 3, n, T) angles, (3, n, T) root."""
  t = np.arange(frames, dtype=np.float64)[None, :]

  def rest(low, high):
    return rng.uniform(low, high, (n, 1))

  def sway(amp_low, amp_high, period_low, period_high):
    amp = rng.uniform(amp_low, amp_high, (n, 1))
    period = rng.uniform(period_low, period_high, (n, 1))
    return amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi, (n, 1)))

  angles = np.zeros((NUM_JOINTS, 3, n, frames), np.float32)
  root = np.zeros((3, n, frames), np.float32)
  angles[PELVIS, 0] = sway(0.005, 0.015, 70, 160)
  angles[PELVIS, 1] = sway(0.01, 0.04, 80, 200)
  angles[PELVIS, 2] = sway(0.005, 0.02, 60, 160)
  root[0] = sway(0.003, 0.012, 80, 200)
  root[2] = sway(0.003, 0.012, 80, 200)
  angles[SPINE_MID, 0] = sway(0.005, 0.015, 80, 130)  # breathing
  angles[NECK, 0] = rest(-0.1, 0.1) + sway(0.01, 0.04, 50, 150)
  angles[NECK, 1] = sway(0.0, 0.06, 60, 200)
  for shoulder, elbow, wrist, hip, side in ((R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, 1.0),
                                            (L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, -1.0)):
    angles[shoulder, 0] = rest(-0.05, 0.15) + sway(0.01, 0.04, 60, 150)
    angles[shoulder, 2] = side * (rest(0.08, 0.2) + sway(0.005, 0.03, 60, 150))
    angles[elbow, 0] = rest(0.05, 0.35) + sway(0.01, 0.03, 60, 150)
    angles[wrist, 0] = rest(-0.1, 0.2)
    angles[hip, 1] = -side * rest(0.0, 0.25)  # toes out; turns the whole leg
  return angles, root


def placement(rng: np.random.Generator, view: np.ndarray) -> dict[str, np.ndarray]:
  """Per-sample camera (height, tilt) and actor placement (ground position, facing)."""
  n = len(view)
  return {
      "camera_height": rng.uniform(0.8, 1.2, n),
      "tilt": rng.uniform(-0.12, 0.06, n),
      "x": rng.uniform(-0.4, 0.4, n),
      "z": rng.uniform(2.4, 3.4, n),
      "yaw": np.deg2rad(np.asarray(VIEW_YAW_DEG)[view - 1]) + rng.uniform(-0.15, 0.15, n),
  }


def to_camera(positions: np.ndarray, offsets: np.ndarray, camera_height: np.ndarray,
               tilt: np.ndarray, x: np.ndarray, z: np.ndarray, yaw: np.ndarray) -> np.ndarray:
  """Body-frame (V, 3, n, T) positions -> camera space (n, 3, T, V), feet on the floor.

  The body turns by `yaw` and stands at (x, z) on a floor `camera_height` below a camera
  pitched by `tilt`.
  """
  foot_height = np.zeros(len(offsets))
  v = L_FOOT
  while v != PELVIS:
    foot_height -= offsets[:, v, 1]
    v = _FK_PARENT[v]
  level = np.stack([x, foot_height + 0.04 - camera_height, z], -1)  # (n, 3)
  tilt_matrix = _rot_x(tilt)
  rotation = np.matmul(tilt_matrix, _rot_y(yaw)).astype(positions.dtype)  # (n, 3, 3)
  shift = np.einsum("nij,nj->ni", tilt_matrix, level).astype(positions.dtype)
  out = np.empty((positions.shape[2], 3, positions.shape[3], positions.shape[0]),
                 positions.dtype)
  for i in range(3):
    xyz = (rotation[:, i, 0, None] * positions[:, 0] + rotation[:, i, 1, None] * positions[:, 1]
           + rotation[:, i, 2, None] * positions[:, 2] + shift[:, i, None])  # (V, n, T)
    out[:, i] = xyz.transpose(1, 2, 0)
  return out


def sensor_noise(rng: np.random.Generator, n: int, frames: int, std: np.ndarray) -> np.ndarray:
  """(n, 3, T, V) noise, correlated over 3 frames, of per-sample std `std` (n,)."""
  white = rng.standard_normal((frames + 2, n, 3, NUM_JOINTS), dtype=np.float32)
  noise = white[2:] + white[1:-1] + white[:-2]  # Kinect output is smoothed over frames
  scale = (std[:, None, None] * _NOISE_SCALE[None, None, :] / np.sqrt(3.0)).astype(np.float32)
  return noise.transpose(1, 2, 0, 3) * scale[:, :, None, :]
