"""The built-in synthetic data set: procedural NTU-layout skeleton actions with true actionlets.

Every sequence is built by forward kinematics (FK) of the 25-joint NTU / Kinect v2 skeleton
(`graph.get_layout('ntu')`). Each subject has fixed bone lengths, so bone lengths are exactly
constant over time before sensor noise. Coordinates are metres in Kinect camera space:
x to the performer's right when they face the camera, y up, z depth (about 2-4 m).

A sample is: per-sample rest pose + slow idle motion (sway, breathing, small head and arm
drift) + the action's joint rotations inside a time window (onset, duration, tempo warp,
amplitude and number of repetitions vary) + temporally correlated sensor noise. A second
body, when present, is an idle bystander beside the actor; body 0 is always the actor.

The ground-truth actionlet of a sample is the (T, V) mask of the actor's joints and frames
whose noise-free position differs from the same sample run without the action (idle motion
only) by more than `actionlet_threshold` metres. It is zero on padded frames.

Splits follow NTU's protocols: subjects 1-10 (odd train, even val: 'xsub') and camera views
1-3 (views 2 and 3 train, view 1 val: 'xview'). View 1 faces the actor; views 2 and 3 see
them from +45 and -45 degrees.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from actclr_jax import graph
from actclr_jax.data import io

LAYOUT = graph.get_layout("ntu")
NUM_JOINTS = 25
NUM_BODIES = 2
NUM_SUBJECTS = 10
NUM_VIEWS = 3
VIEW_YAW_DEG = (0.0, 45.0, -45.0)  # views 1, 2, 3
SPLITS = ("xsub", "xview")

CLASS_NAMES = (
    "raise right hand",
    "wave right hand",
    "right arm circles",
    "wave left hand",
    "punch (left)",
    "clap",
    "kick (right leg)",
    "nod",
    "tilt head",
    "bend down",
    "squat",
    "jump",
)
NUM_CLASSES = len(CLASS_NAMES)

# 0-based joint indices (NTU joint j is index j - 1).
PELVIS, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 4, 5, 6, 7
R_SHOULDER, R_ELBOW, R_WRIST, R_HAND = 8, 9, 10, 11
L_HIP, L_KNEE, L_ANKLE, L_FOOT = 12, 13, 14, 15
R_HIP, R_KNEE, R_ANKLE, R_FOOT = 16, 17, 18, 19
SPINE_SHOULDER, L_TIP, L_THUMB, R_TIP, R_THUMB = 20, 21, 22, 23, 24

_LEFT_FOREARM = frozenset({L_ELBOW, L_WRIST, L_HAND, L_TIP, L_THUMB})
_RIGHT_FOREARM = frozenset({R_ELBOW, R_WRIST, R_HAND, R_TIP, R_THUMB})
_UPPER_BODY = frozenset({SPINE_MID, SPINE_SHOULDER, NECK, HEAD, L_SHOULDER, R_SHOULDER}
                        | _LEFT_FOREARM | _RIGHT_FOREARM)
_ALL = frozenset(range(NUM_JOINTS))

# The joints each class may move (a superset of its actionlets). A rotation at a joint moves
# its descendants only, so e.g. raising the arm at the shoulder leaves the shoulder in place.
CLASS_JOINTS: tuple[frozenset[int], ...] = (
    _RIGHT_FOREARM,                                    # raise right hand
    _RIGHT_FOREARM,                                    # wave right hand
    _RIGHT_FOREARM,                                    # right arm circles
    _LEFT_FOREARM,                                     # wave left hand
    _LEFT_FOREARM,                                     # punch (left)
    _LEFT_FOREARM | _RIGHT_FOREARM,                    # clap
    frozenset({R_KNEE, R_ANKLE, R_FOOT}),              # kick (right leg)
    frozenset({HEAD}),                                 # nod
    frozenset({HEAD}),                                 # tilt head
    _UPPER_BODY,                                       # bend down
    _ALL - {L_ANKLE, L_FOOT, R_ANKLE, R_FOOT},         # squat: the feet stay planted
    _ALL,                                              # jump
)

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
_ARM_BONES = frozenset(_LEFT_FOREARM | _RIGHT_FOREARM)
_TORSO_BONES = frozenset({SPINE_MID, SPINE_SHOULDER, NECK, HEAD})
# Kinect tracks hands, fingers and feet worse than the trunk.
_NOISE_SCALE = np.ones(NUM_JOINTS)
_NOISE_SCALE[[L_HAND, R_HAND, L_TIP, L_THUMB, R_TIP, R_THUMB, L_FOOT, R_FOOT]] = 1.8
_CHUNK = 256  # samples per FK batch; fixed, so that results do not depend on it
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


def _fk_soa(angles: np.ndarray, root: np.ndarray, offsets: np.ndarray) -> np.ndarray:
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
  positions = _fk_soa(np.ascontiguousarray(angles.transpose(2, 3, 0, 1)),
                      np.ascontiguousarray(root.transpose(2, 0, 1)), offsets)
  return positions.transpose(2, 3, 0, 1)


# --------------------------------------------------------------------------------------------
# Time profiles. `u` is the action phase in [0, 1]; every profile is 0 with zero slope at
# u = 0 and u = 1, so the action starts and ends at the idle pose.


def _smoothstep(x: np.ndarray) -> np.ndarray:
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def _plateau(u: np.ndarray, ramp: np.ndarray) -> np.ndarray:
  """0 -> 1 over [0, ramp], 1, then 1 -> 0 over [1 - ramp, 1]."""
  return _smoothstep(u / ramp) * (1.0 - _smoothstep((u - 1.0 + ramp) / ramp))


def _hold(u: np.ndarray, ramp: np.ndarray) -> np.ndarray:
  """Phase in [0, 1] within the plateau of `_plateau(u, ramp)`."""
  return np.clip((u - ramp) / (1.0 - 2.0 * ramp), 0.0, 1.0)


def _bumps(s: np.ndarray, count: np.ndarray) -> np.ndarray:
  """`count` smooth bumps from 0 to 1 and back over s in [0, 1]."""
  return np.sin(np.pi * count * s) ** 2


def _window(s: np.ndarray, start: float, width: float) -> np.ndarray:
  return np.clip((s - start) / width, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Actions. Each takes the phase u (n, T), the amplitude factor amp (n, 1), the bone offsets
# (n, V, 3) and an rng, and returns local angle increments (V, 3, n, T) and a pelvis
# translation (3, n, T), components first as `_fk_soa` takes them. Angles: x flexes forward
# (a hanging arm or leg swings forward, the head pitches back), y turns about the vertical,
# z abducts to the right. A left limb uses the mirror image: the same x, negated y and z.

ActionFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator],
                    tuple[np.ndarray, np.ndarray]]


def _empty(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  n, t = u.shape
  return np.zeros((NUM_JOINTS, 3, n, t), np.float32), np.zeros((3, n, t), np.float32)


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
  return rng.uniform(low, high, size=(n, 1))


def _count(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
  return rng.integers(low, high + 1, size=(n, 1)).astype(np.float64)


def _raise_right(u, amp, offsets, rng):
  """Straight right arm raised forward and up (80-165 deg), held, lowered."""
  n = len(u)
  angles, root = _empty(u)
  env = _plateau(u, _uniform(rng, 0.2, 0.35, n))
  angles[R_SHOULDER, 0] = np.minimum(amp * _uniform(rng, 2.2, 2.6, n), 2.9) * env
  angles[R_SHOULDER, 2] = _uniform(rng, 0.05, 0.3, n) * env
  return angles, root


def _wave(u, amp, offsets, rng, side):
  """Upper arm out to the side, forearm up, swinging side to side 2-4 times."""
  n = len(u)
  angles, root = _empty(u)
  shoulder, elbow = (R_SHOULDER, R_ELBOW) if side > 0 else (L_SHOULDER, L_ELBOW)
  ramp = _uniform(rng, 0.15, 0.25, n)
  env = _plateau(u, ramp)
  swing = np.sin(2 * np.pi * _count(rng, 2, 4, n) * _hold(u, ramp)) * _plateau(
      _hold(u, ramp), 0.1)
  angles[shoulder, 0] = _uniform(rng, 0.1, 0.4, n) * env
  angles[shoulder, 2] = side * _uniform(rng, 1.2, 1.5, n) * env
  angles[elbow, 2] = side * (_uniform(rng, 1.3, 1.7, n) * env
                             + amp * _uniform(rng, 0.3, 0.55, n) * swing)
  return angles, root


def _wave_right(u, amp, offsets, rng):
  """`_wave` with the right arm."""
  return _wave(u, amp, offsets, rng, side=1.0)


def _wave_left(u, amp, offsets, rng):
  """`_wave` with the left arm."""
  return _wave(u, amp, offsets, rng, side=-1.0)


def _arm_circles_right(u, amp, offsets, rng):
  """1-2 full forward circles of the straight right arm."""
  n = len(u)
  angles, root = _empty(u)
  turns = _count(rng, 1, 2, n)
  # Full turns of a straight arm about the shoulder, tilted outward to clear the body.
  angles[R_SHOULDER, 0] = 2 * np.pi * turns * _smoothstep(u)
  angles[R_SHOULDER, 2] = amp * _uniform(rng, 0.15, 0.35, n) * _plateau(u, 0.15)
  return angles, root


def _punch_left(u, amp, offsets, rng):
  """Left fist to the guard, 1-3 punches forward (elbow extends), back to rest."""
  n = len(u)
  angles, root = _empty(u)
  ramp = _uniform(rng, 0.15, 0.25, n)
  guard = _plateau(u, ramp)
  punch = _bumps(_hold(u, ramp), _count(rng, 1, 3, n))
  bent = _uniform(rng, 1.8, 2.2, n)
  angles[L_SHOULDER, 0] = (_uniform(rng, 0.4, 0.7, n) * guard
                           + amp * _uniform(rng, 0.6, 0.8, n) * punch)
  angles[L_SHOULDER, 1] = -_uniform(rng, 0.1, 0.3, n) * guard  # toward the midline
  angles[L_ELBOW, 0] = bent * guard * (1.0 - np.minimum(amp, 1.0) * 0.95 * punch)
  return angles, root


def _clap(u, amp, offsets, rng):
  """Both arms forward; the hands swing apart and meet 3-6 times."""
  n = len(u)
  angles, root = _empty(u)
  ramp = _uniform(rng, 0.15, 0.25, n)
  env = _plateau(u, ramp)
  meet = _bumps(_hold(u, ramp), _count(rng, 3, 6, n))
  opened = amp * _uniform(rng, 0.45, 0.75, n)
  closed = _uniform(rng, 0.15, 0.25, n)  # hands cross the midline a little when they meet
  swing = env * (-opened + (opened + closed) * meet)
  flex = _uniform(rng, 1.0, 1.4, n) * env
  elbow = _uniform(rng, 0.3, 0.6, n) * env
  for shoulder, elbow_joint, side in ((R_SHOULDER, R_ELBOW, 1.0), (L_SHOULDER, L_ELBOW, -1.0)):
    angles[shoulder, 0] = flex
    angles[shoulder, 1] = side * swing
    angles[elbow_joint, 0] = elbow
  return angles, root


def _kick_right(u, amp, offsets, rng):
  """Right knee raised (hip and knee flexed), 1-2 kicks (knee extends), leg lowered."""
  n = len(u)
  angles, root = _empty(u)
  ramp = _uniform(rng, 0.25, 0.35, n)
  chamber = _plateau(u, ramp)
  kick = _bumps(_hold(u, ramp), _count(rng, 1, 2, n))
  angles[R_HIP, 0] = (_uniform(rng, 0.6, 0.9, n) * chamber
                      + amp * _uniform(rng, 0.2, 0.5, n) * kick)
  angles[R_KNEE, 0] = -_uniform(rng, 1.3, 1.7, n) * chamber * (
      1.0 - _uniform(rng, 0.85, 1.0, n) * kick)
  angles[R_ANKLE, 0] = -0.3 * kick
  return angles, root


def _nod(u, amp, offsets, rng):
  """2-4 nods: the head pitches forward and back (at least 17 deg)."""
  n = len(u)
  angles, root = _empty(u)
  # The floor keeps the head's displacement above the actionlet threshold for everyone.
  pitch = np.clip(amp * _uniform(rng, 0.3, 0.55, n), 0.3, 0.6)
  angles[NECK, 0] = -pitch * _bumps(u, _count(rng, 2, 4, n))
  return angles, root


def _tilt_head(u, amp, offsets, rng):
  """The head tilts to one side and the other, 1-2 times (at least 17 deg)."""
  n = len(u)
  angles, root = _empty(u)
  side = np.sin(2 * np.pi * _count(rng, 1, 2, n) * u) * _plateau(u, 0.15)
  angles[NECK, 2] = np.maximum(amp * _uniform(rng, 0.25, 0.45, n), 0.3) * side
  return angles, root


def _bend(u, amp, offsets, rng):
  """Bend forward at the hips (30-80 deg, more with the spine), arms hanging, and back."""
  n = len(u)
  angles, root = _empty(u)
  lean = np.minimum(amp * _uniform(rng, 0.8, 1.2, n), 1.4) * _plateau(
      u, _uniform(rng, 0.2, 0.35, n))
  angles[PELVIS, 0] = -lean
  angles[SPINE_MID, 0] = -0.2 * lean
  # The arms hang under gravity, and the head looks up a little.
  hang = _uniform(rng, 0.8, 1.0, n) * 1.2 * lean
  angles[L_SHOULDER, 0] = hang
  angles[R_SHOULDER, 0] = hang
  angles[NECK, 0] = 0.3 * lean
  return angles, root


def _leg_lengths(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  thigh = np.linalg.norm(offsets[:, R_KNEE], axis=-1)[:, None]
  shin = np.linalg.norm(offsets[:, R_ANKLE], axis=-1)[:, None]
  return thigh, shin


def _crouch(angles: np.ndarray, thigh_angle: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """Bends both legs with the feet planted; returns the pelvis drop (n, T)."""
  thigh, shin = _leg_lengths(offsets)
  # The shin leans back by psi so that the ankle stays under the hip.
  shin_angle = np.arcsin(np.clip(thigh * np.sin(thigh_angle) / shin, -1.0, 1.0))
  for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
    angles[hip, 0] += thigh_angle
    angles[knee, 0] -= thigh_angle + shin_angle
    angles[ankle, 0] += shin_angle
  return thigh * (1.0 - np.cos(thigh_angle)) + shin * (1.0 - np.cos(shin_angle))


def _squat(u, amp, offsets, rng):
  """Squat with the feet planted and the trunk leaning forward, then stand up."""
  n = len(u)
  angles, root = _empty(u)
  env = _plateau(u, _uniform(rng, 0.2, 0.35, n))
  thigh_angle = np.minimum(amp * _uniform(rng, 0.9, 1.2, n), 1.45) * env
  root[1] = -_crouch(angles, thigh_angle, offsets)
  angles[PELVIS, 0] = -0.35 * thigh_angle  # the trunk leans forward for balance
  arms = _uniform(rng, 0.0, 1.4, n) * env  # some reach forward for balance
  angles[L_SHOULDER, 0] = arms
  angles[R_SHOULDER, 0] = arms
  return angles, root


def _jump(u, amp, offsets, rng):
  """1-2 jumps: crouch, take off with an arm swing, flight, land in a crouch."""
  n = len(u)
  angles, root = _empty(u)
  s = (u * _count(rng, 1, 2, n)) % 1.0  # phase within each jump
  s = np.where(u >= 1.0, 1.0, s)
  crouch = np.sin(np.pi * _window(s, 0.0, 0.4)) ** 2 + np.sin(np.pi * _window(s, 0.6, 0.4)) ** 2
  q = _window(s, 0.35, 0.3)
  flight = 4.0 * q * (1.0 - q)
  thigh_angle = amp * _uniform(rng, 0.5, 0.8, n) * crouch
  root[1] = (-_crouch(angles, thigh_angle, offsets)
             + amp * _uniform(rng, 0.08, 0.2, n) * flight)
  angles[L_ANKLE, 0] -= 0.5 * flight  # toes point down in the air
  angles[R_ANKLE, 0] -= 0.5 * flight
  swing = amp * _uniform(rng, 0.5, 1.2, n) * np.sin(np.pi * _window(s, 0.2, 0.6)) ** 2
  angles[L_SHOULDER, 0] = swing
  angles[R_SHOULDER, 0] = swing
  return angles, root


ACTIONS: tuple[ActionFn, ...] = (
    _raise_right, _wave_right, _arm_circles_right, _wave_left, _punch_left, _clap,
    _kick_right, _nod, _tilt_head, _bend, _squat, _jump,
)
assert len(ACTIONS) == len(CLASS_NAMES) == len(CLASS_JOINTS)


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


def _subject_style() -> np.ndarray:
  """(NUM_SUBJECTS,) each subject's habitual amplitude factor."""
  rng = np.random.default_rng([_SUBJECT_SEED, 1])
  return rng.uniform(0.88, 1.12, NUM_SUBJECTS)


def _idle(rng: np.random.Generator, n: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
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


def _placement(rng: np.random.Generator, view: np.ndarray) -> dict[str, np.ndarray]:
  """Per-sample camera (height, tilt) and actor placement (ground position, facing)."""
  n = len(view)
  return {
      "camera_height": rng.uniform(0.8, 1.2, n),
      "tilt": rng.uniform(-0.12, 0.06, n),
      "x": rng.uniform(-0.4, 0.4, n),
      "z": rng.uniform(2.4, 3.4, n),
      "yaw": np.deg2rad(np.asarray(VIEW_YAW_DEG)[view - 1]) + rng.uniform(-0.15, 0.15, n),
  }


def _to_camera(positions: np.ndarray, offsets: np.ndarray, camera_height: np.ndarray,
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


def _sensor_noise(rng: np.random.Generator, n: int, frames: int, std: np.ndarray) -> np.ndarray:
  """(n, 3, T, V) noise, correlated over 3 frames, of per-sample std `std` (n,)."""
  white = rng.standard_normal((frames + 2, n, 3, NUM_JOINTS), dtype=np.float32)
  noise = white[2:] + white[1:-1] + white[:-2]  # Kinect output is smoothed over frames
  scale = (std[:, None, None] * _NOISE_SCALE[None, None, :] / np.sqrt(3.0)).astype(np.float32)
  return noise.transpose(1, 2, 0, 3) * scale[:, :, None, :]


# --------------------------------------------------------------------------------------------
# The data set.


def generate(num_samples: int, seed: int = 0, max_frames: int = 100, *, min_frames: int = 40,
             two_body_prob: float = 0.3, noise_std: float = 0.003,
             actionlet_threshold: float = 0.02, show_progress: bool = False) -> dict:
  """Generates `num_samples` synthetic sequences; deterministic given all arguments.

  Args:
    num_samples: N.
    seed: random seed of everything but the subjects' bodies (fixed people).
    max_frames: T of the arrays; each sequence has U{min_frames..max_frames} valid frames,
      then zeros.
    min_frames: shortest sequence (capped at max_frames).
    two_body_prob: probability of an idle bystander as body 1.
    noise_std: typical std (metres) of the sensor noise on the trunk; 0 turns noise off.
    actionlet_threshold: action-induced displacement (metres) above which a joint is in
      the actionlet.
    show_progress: show a progress bar.

  Returns:
    A dict with 'data' float32 (N, 3, T, 25, 2), 'label' int64 (N,), 'actionlet' bool
    (N, T, 25), 'subject' int64 (N,) in 1..10, 'view' int64 (N,) in 1..3, 'num_frames'
    int64 (N,), 'num_bodies' int64 (N,) in {1, 2}.
  """
  if num_samples < 1:
    raise ValueError(f"num_samples must be positive, got {num_samples}")
  if max_frames < 2:
    raise ValueError(f"max_frames must be at least 2, got {max_frames}")
  min_frames = max(2, min(min_frames, max_frames))
  n_all = num_samples
  rng = np.random.default_rng(seed)
  label = rng.permutation(np.arange(n_all) % NUM_CLASSES).astype(np.int64)
  subject = rng.integers(1, NUM_SUBJECTS + 1, n_all).astype(np.int64)
  view = rng.integers(1, NUM_VIEWS + 1, n_all).astype(np.int64)
  num_frames = rng.integers(min_frames, max_frames + 1, n_all).astype(np.int64)
  num_bodies = (1 + (rng.random(n_all) < two_body_prob)).astype(np.int64)
  bystander = rng.integers(1, NUM_SUBJECTS + 1, n_all)
  # The action occupies a window of the sequence, with idle frames before and after.
  length = np.maximum(np.round(num_frames * rng.uniform(0.5, 0.9, n_all)), 2.0)
  onset = rng.uniform(0.0, 1.0, n_all) * (num_frames - length)
  warp = rng.uniform(-0.5, 0.5, n_all)  # monotone tempo change within the action
  amp = rng.uniform(0.75, 1.25, n_all) * _subject_style()[subject - 1]
  noise = noise_std * rng.uniform(0.6, 1.4, (n_all, NUM_BODIES))
  camera = _placement(rng, view)
  side = rng.choice([-1.0, 1.0], n_all)
  bystander_place = {
      "x": camera["x"] + side * rng.uniform(0.7, 1.2, n_all),
      "z": camera["z"] + rng.uniform(-0.3, 0.5, n_all),
      "yaw": camera["yaw"] + rng.uniform(-0.4, 0.4, n_all),
  }
  offsets_all = subject_offsets()

  data = np.zeros((n_all, 3, max_frames, NUM_JOINTS, NUM_BODIES), np.float32)
  actionlet = np.zeros((n_all, max_frames, NUM_JOINTS), bool)
  frame = np.arange(max_frames, dtype=np.float64)
  starts = range(0, n_all, _CHUNK)
  if show_progress:
    starts = io.progress(starts, "synthetic", total=len(starts))
  for start in starts:
    idx = np.arange(start, min(start + _CHUNK, n_all))
    n = len(idx)
    valid = frame[None, :] < num_frames[idx, None]  # (n, T)
    u = np.clip((frame[None, :] - onset[idx, None]) / (length[idx, None] - 1.0), 0.0, 1.0)
    u = u + warp[idx, None] * u * (1.0 - u)
    offsets = offsets_all[subject[idx] - 1]
    idle_angles, idle_root = _idle(rng, n, max_frames)
    act_angles, act_root = np.zeros_like(idle_angles), np.zeros_like(idle_root)
    for c, action in enumerate(ACTIONS):
      rows = np.flatnonzero(label[idx] == c)
      if len(rows):
        act_angles[:, :, rows], act_root[:, rows] = action(
            u[rows], amp[idx[rows], None], offsets[rows], rng)
    idle = _fk_soa(idle_angles, idle_root, offsets)
    full = _fk_soa(idle_angles + act_angles, idle_root + act_root, offsets)
    shift = np.sqrt(((full - idle) ** 2).sum(1))  # (V, n, T)
    actionlet[idx] = (shift > actionlet_threshold).transpose(1, 2, 0) & valid[:, :, None]

    cam = {k: v[idx] for k, v in camera.items()}
    bodies = [(full, offsets, cam, np.arange(n))]
    rows = np.flatnonzero(num_bodies[idx] == 2)
    if len(rows):
      other_offsets = offsets_all[bystander[idx[rows]] - 1]
      other = _fk_soa(*_idle(rng, len(rows), max_frames), other_offsets)
      other_cam = dict(camera_height=cam["camera_height"][rows], tilt=cam["tilt"][rows],
                       **{k: v[idx[rows]] for k, v in bystander_place.items()})
      bodies.append((other, other_offsets, other_cam, rows))
    for m, (positions, body_offsets, place, rows) in enumerate(bodies):
      xyz = _to_camera(positions, body_offsets, **place)
      xyz += _sensor_noise(rng, len(rows), max_frames, noise[idx[rows], m])
      xyz *= valid[rows, None, :, None]
      data[idx[rows], :, :, :, m] = xyz
  return {
      "data": data, "label": label, "actionlet": actionlet, "subject": subject,
      "view": view, "num_frames": num_frames, "num_bodies": num_bodies,
  }


def split_masks(subject: np.ndarray,
                view: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'xsub' | 'xview': (train, val) boolean masks}: odd subjects / views 2, 3 train."""
  subject, view = np.asarray(subject), np.asarray(view)
  xsub = subject % 2 == 1
  xview = view != 1
  return {"xsub": (xsub, ~xsub), "xview": (xview, ~xview)}


# --------------------------------------------------------------------------------------------
# The motion-energy baseline: how far joint-wise motion alone goes.


def motion_energy_features(data: np.ndarray, batch: int = 1024) -> np.ndarray:
  """(N, C, T, V, M) -> (N, V) float64: sum over valid frames of body 0's squared frame steps.

  A frame is valid where body 0 is non-zero; steps into or out of padding are left out.
  """
  out = np.zeros((data.shape[0], data.shape[3]))
  for start in range(0, data.shape[0], batch):
    x = np.asarray(data[start:start + batch, :, :, :, 0], dtype=np.float64)  # (n, C, T, V)
    valid = np.any(x != 0, axis=(1, 3))
    both = valid[:, 1:] & valid[:, :-1]
    step = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum(1)  # (n, T - 1, V)
    out[start:start + batch] = (step * both[:, :, None]).sum(1)
  return out


def _log_energy(data: np.ndarray) -> np.ndarray:
  return np.log(motion_energy_features(data) + 1e-6)


def _nearest_centroid_accuracy(train: np.ndarray, train_label: np.ndarray, val: np.ndarray,
                               val_label: np.ndarray) -> float:
  """Accuracy on (val, val_label) of nearest class centroid on per-feature standardised data."""
  train_label, val_label = np.asarray(train_label), np.asarray(val_label)
  mean, std = train.mean(0), train.std(0) + 1e-6
  train, val = (train - mean) / std, (val - mean) / std
  classes = np.unique(train_label)
  centroids = np.stack([train[train_label == c].mean(0) for c in classes])
  distance = ((val[:, None, :] - centroids[None]) ** 2).sum(-1)
  return float(np.mean(classes[np.argmin(distance, axis=1)] == val_label))


def motion_energy_baseline(train_data: np.ndarray, train_label: np.ndarray,
                           val_data: np.ndarray, val_label: np.ndarray) -> float:
  """Val accuracy of nearest class centroid on standardised log motion energies.

  Features are `log(motion_energy_features + 1e-6)` (N, V), standardised per joint with the
  training mean and std. Data are (N, C, T, V, M).
  """
  return _nearest_centroid_accuracy(_log_energy(train_data), train_label,
                                    _log_energy(val_data), val_label)


# --------------------------------------------------------------------------------------------
# On disk.


def prepare(out_dir: str, *, num_samples: int = 10000, seed: int = 0,
            max_frames: int = 100) -> dict:
  """Generates the set and writes `{out_dir}/{xsub,xview}/{train,val}_{data,label,actionlet}`.

  Data are float32 (N, 3, max_frames, 25, 2), labels the usual (names, labels) pickle with
  names `syn000123` (the sample's index in `generate`), actionlets uint8 (N, max_frames, 25).

  Returns:
    {'layout': 'ntu', 'splits': {split: {'train': n, 'val': n}}, 'classes': CLASS_NAMES,
    'num_samples': N, 'seed': seed}.
  """
  generated = generate(num_samples, seed=seed, max_frames=max_frames, show_progress=True)
  names = np.array([f"syn{i:06d}" for i in range(num_samples)])
  splits = {}
  for split, masks in split_masks(generated["subject"], generated["view"]).items():
    splits[split] = {}
    for part, mask in zip(("train", "val"), masks):
      io.write_split(os.path.join(out_dir, split), part, generated["data"][mask], names[mask],
                     generated["label"][mask],
                     extras={"actionlet": generated["actionlet"][mask].astype(np.uint8)})
      splits[split][part] = int(mask.sum())
  return {"layout": "ntu", "splits": splits, "classes": list(CLASS_NAMES),
          "num_samples": num_samples, "seed": seed}


def _load_part(directory: str, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(data (memory-mapped), labels, actionlet) of `{directory}/{part}_*`."""
  paths = [os.path.join(directory, f"{part}_{suffix}") for suffix in
           ("data.npy", "label.pkl", "actionlet.npy")]
  for path in paths:
    if not os.path.isfile(path):
      raise io.DataError(f"{path}: missing; run synthetic.prepare first")
  try:
    data = np.load(paths[0], mmap_mode="r")
    actionlet = np.load(paths[2], mmap_mode="r")
  except ValueError as e:
    raise io.DataError(f"{directory}/{part}: unreadable .npy file: {e}") from e
  _, labels = io.load_labels(paths[1])
  if data.ndim != 5 or len(data) != len(labels) or actionlet.shape != (
      len(data), data.shape[2], data.shape[3]):
    raise io.DataError(f"{directory}/{part}: data {data.shape}, {len(labels)} labels and "
                       f"actionlet {actionlet.shape} do not match")
  return data, labels, actionlet


def _sequence_stats(data: np.ndarray, actionlet: np.ndarray,
                    batch: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per sample: valid frames, bodies present, and actionlet area over valid joint-frames."""
  frames, bodies, area = [], [], []
  for start in range(0, len(data), batch):
    x = np.asarray(data[start:start + batch])
    mask = np.asarray(actionlet[start:start + batch]).astype(bool)
    valid = np.any(x[..., 0] != 0, axis=(1, 3))
    frames.append(valid.sum(1))
    bodies.append(1 + np.any(x[..., 1] != 0, axis=(1, 2, 3)))
    area.append(mask.sum((1, 2)) / np.maximum(valid.sum(1) * x.shape[3], 1))
  return np.concatenate(frames), np.concatenate(bodies), np.concatenate(area)


def summarize(source: str | dict) -> str:
  """A short human summary of a prepared directory (see `prepare`) or a `generate` dict.

  Class counts, split sizes, sequence lengths, share of two-body samples, actionlet area and
  the motion-energy baseline's accuracy on each split.
  """
  if isinstance(source, dict):
    where = f"{len(source['label'])} generated samples"
    label = source["label"]
    stats = [_sequence_stats(source["data"], source["actionlet"])]
    features = _log_energy(source["data"])
    splits = {split: ((features[train], label[train]), (features[val], label[val]))
              for split, (train, val) in split_masks(source["subject"], source["view"]).items()}
  else:
    parts = {split: [_load_part(os.path.join(source, split), part) for part in ("train", "val")]
             for split in SPLITS}
    # xsub's train and val hold every sample once.
    label = np.concatenate([labels for _, labels, _ in parts["xsub"]])
    stats = [_sequence_stats(data, actionlet) for data, _, actionlet in parts["xsub"]]
    splits = {split: [(_log_energy(data), labels) for data, labels, _ in pair]
              for split, pair in parts.items()}
    where = f"{len(label)} samples in {source}"
  frames, bodies, area = (np.concatenate(column) for column in zip(*stats))
  counts = np.bincount(label, minlength=NUM_CLASSES)
  lines = [
      f"synthetic NTU-layout skeletons: {where}, {NUM_CLASSES} classes, "
      f"{NUM_SUBJECTS} subjects, {NUM_VIEWS} views",
      "classes: " + ", ".join(f"{name} {count}" for name, count in zip(CLASS_NAMES, counts)),
      f"frames per sequence: min {frames.min()}, mean {frames.mean():.1f}, max {frames.max()}; "
      f"two bodies: {np.mean(bodies == 2):.1%}",
      f"actionlet area (share of the actor's valid joint-frames): mean {area.mean():.1%}, "
      f"min {area.min():.1%}, max {area.max():.1%}",
  ]
  chance = 1.0 / NUM_CLASSES
  for split, ((train, train_label), (val, val_label)) in splits.items():
    sizes = f"{split}: train {len(train_label)}, val {len(val_label)}"
    if len(train_label) == 0 or len(val_label) == 0:
      lines.append(f"{sizes} (a split is empty: no baseline)")
      continue
    accuracy = _nearest_centroid_accuracy(train, train_label, val, val_label)
    lines.append(f"{sizes}; motion-energy baseline accuracy {accuracy:.1%} "
                 f"(chance {chance:.1%})")
  return "\n".join(lines)
