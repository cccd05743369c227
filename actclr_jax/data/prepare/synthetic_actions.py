"""The synthetic data set's twelve actions: joint rotations over the action phase.

Each class moves only its `CLASS_JOINTS`; `ACTIONS[c]` builds class c's rotations (class
names in `registry.SYNTHETIC_CLASSES`, in label order).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from actclr_jax.data import registry
from actclr_jax.data.prepare.synthetic_body import (
    HEAD, L_ANKLE, L_ELBOW, L_FOOT, L_HIP, L_KNEE, L_SHOULDER, LEFT_FOREARM, NECK, NUM_JOINTS,
    PELVIS, R_ANKLE, R_ELBOW, R_FOOT, R_HIP, R_KNEE, R_SHOULDER, RIGHT_FOREARM, SPINE_MID,
    SPINE_SHOULDER)

_UPPER_BODY = frozenset({SPINE_MID, SPINE_SHOULDER, NECK, HEAD, L_SHOULDER, R_SHOULDER}
                        | LEFT_FOREARM | RIGHT_FOREARM)
_ALL = frozenset(range(NUM_JOINTS))

# The joints each class may move (a superset of its actionlets). A rotation at a joint moves
# its descendants only, so e.g. raising the arm at the shoulder leaves the shoulder in place.
CLASS_JOINTS: tuple[frozenset[int], ...] = (
    RIGHT_FOREARM,                                    # raise right hand
    RIGHT_FOREARM,                                    # wave right hand
    RIGHT_FOREARM,                                    # right arm circles
    LEFT_FOREARM,                                     # wave left hand
    LEFT_FOREARM,                                     # punch (left)
    LEFT_FOREARM | RIGHT_FOREARM,                    # clap
    frozenset({R_KNEE, R_ANKLE, R_FOOT}),              # kick (right leg)
    frozenset({HEAD}),                                 # nod
    frozenset({HEAD}),                                 # tilt head
    _UPPER_BODY,                                       # bend down
    _ALL - {L_ANKLE, L_FOOT, R_ANKLE, R_FOOT},         # squat: the feet stay planted
    _ALL,                                              # jump
)

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
# translation (3, n, T), components first as `fk_soa` takes them. Angles: x flexes forward
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
assert len(ACTIONS) == len(registry.SYNTHETIC_CLASSES) == len(CLASS_JOINTS)
