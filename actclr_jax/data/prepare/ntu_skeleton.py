"""NTU RGB+D `.skeleton` files: the parser and the choice of (at most) two bodies per frame.

A `.skeleton` file is text: the frame count; then per frame a body count, and per body a
line of 10 body values (64-bit tracking id first), the joint count (25) and 25 lines of 12
joint values (x y z depthX depthY colorX colorY orientationW X Y Z trackingState).
`load_sample` turns one file into a (3, max_frames, 25, 2) float32 sample; `ntu.prepare`
runs it over a folder.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from actclr_jax.data import io

NUM_JOINTS = 25
MAX_BODIES = 2

BODY_FIELDS = ("clipped_edges", "hand_left_confidence", "hand_left_state",
               "hand_right_confidence", "hand_right_state", "is_restricted", "lean_x", "lean_y",
               "tracking_state")
JOINT_FIELDS = ("x", "y", "z", "depth_x", "depth_y", "color_x", "color_y", "orientation_w",
                "orientation_x", "orientation_y", "orientation_z", "tracking_state")

BODY_SELECTIONS = ("energy", "file_order")


# ----------------------------------------------------------------------------------------------
# Parsing.


@dataclasses.dataclass(frozen=True)
class Body:
  """One body in one frame.

  Attributes:
    tracking_id: the sensor's 64-bit tracking id (an exact integer, never a float).
    info: (9,) float64, the other 9 body values in `BODY_FIELDS` order.
    joints: (25, 12) float64, the joint values in `JOINT_FIELDS` order.
  """

  tracking_id: int
  info: np.ndarray
  joints: np.ndarray

  @property
  def xyz(self) -> np.ndarray:
    """(25, 3) camera-space joint positions in metres."""
    return self.joints[:, :3]


@dataclasses.dataclass(frozen=True)
class SkeletonFile:
  """Every field of a `.skeleton` file: `frames[t]` lists the bodies of frame t in file order."""

  path: str
  frames: list[list[Body]]

  @property
  def num_frames(self) -> int:
    return len(self.frames)

  @property
  def body_counts(self) -> list[int]:
    """Number of bodies listed in each frame."""
    return [len(bodies) for bodies in self.frames]

  @property
  def tracking_ids(self) -> list[int]:
    """Distinct tracking ids in order of first appearance."""
    return list(dict.fromkeys(b.tracking_id for bodies in self.frames for b in bodies))


class _Lines:
  """A cursor over the lines of a file that reports 1-based line numbers in errors."""

  def __init__(self, path: str, lines: list[str]):
    self.path = path
    self.lines = lines
    self.pos = 0  # 0-based index of the next line.

  def error(self, line: int, message: str) -> io.DataError:
    return io.DataError(f"{self.path}: line {line}: {message}")

  def eof_error(self, what: str) -> io.DataError:
    return self.error(len(self.lines) + 1,
                      f"unexpected end of file (truncated?) while reading {what}")

  def next(self, what: str) -> tuple[int, str]:
    if self.pos >= len(self.lines):
      raise self.eof_error(what)
    self.pos += 1
    return self.pos, self.lines[self.pos - 1]

  def integer(self, what: str) -> int:
    line, text = self.next(what)
    tokens = text.split()
    try:
      if len(tokens) != 1:
        raise ValueError
      value = int(tokens[0])
    except ValueError:
      raise self.error(line, f"expected {what} (one integer), got {text.strip()!r}") from None
    if value < 0:
      raise self.error(line, f"{what} is negative ({value})")
    return value


def _parse_body(cursor: _Lines, what: str) -> Body:
  line, text = cursor.next(f"the body values of {what}")
  tokens = text.split()
  if len(tokens) != 1 + len(BODY_FIELDS):
    raise cursor.error(line, f"expected {1 + len(BODY_FIELDS)} body values for {what}, got "
                       f"{len(tokens)}: {text.strip()!r}")
  try:
    tracking_id = int(tokens[0])
    info = np.array(tokens[1:], dtype=np.float64)
  except ValueError:
    raise cursor.error(line, f"non-numeric body values for {what}: {text.strip()!r}") from None

  joint_count = cursor.integer(f"the joint count of {what}")
  if joint_count != NUM_JOINTS:
    raise cursor.error(cursor.pos, f"joint count is {joint_count}, expected {NUM_JOINTS} "
                       f"({what})")
  start = cursor.pos  # 0-based index of the first joint line.
  block = cursor.lines[start:start + NUM_JOINTS]
  if len(block) < NUM_JOINTS:
    raise cursor.eof_error(f"joint {len(block) + 1} of {what}")
  rows = [text.split() for text in block]
  try:
    joints = np.array(rows, dtype=np.float64)
  except ValueError:
    joints = None
  if joints is None or joints.shape != (NUM_JOINTS, len(JOINT_FIELDS)):
    # Slow path, only for bad files: find the offending line.
    for j, row in enumerate(rows):
      if len(row) != len(JOINT_FIELDS):
        raise cursor.error(start + j + 1, f"expected {len(JOINT_FIELDS)} values for joint "
                           f"{j + 1} of {what}, got {len(row)}: {block[j].strip()!r}")
      try:
        [float(token) for token in row]
      except ValueError:
        raise cursor.error(start + j + 1, f"non-numeric value for joint {j + 1} of {what}: "
                           f"{block[j].strip()!r}") from None
    raise cursor.error(start + 1, f"unreadable joint block of {what}")
  finite = np.isfinite(joints[:, :3]).all(axis=1)
  if not finite.all():
    j = int(np.argmin(finite))
    raise cursor.error(start + j + 1, f"NaN or inf coordinate for joint {j + 1} of {what}: "
                       f"{block[j].strip()!r}")
  cursor.pos = start + NUM_JOINTS
  return Body(tracking_id=tracking_id, info=info, joints=joints)


def parse_skeleton_file(path: str) -> SkeletonFile:
  """Reads every field of an NTU `.skeleton` file.

  Raises DataError naming the file and line for: an empty file, a truncated file (end of file
  before the declared frames, bodies or joints), a joint count other than 25, a wrong number of
  values or a non-numeric value on a line, a NaN or inf x/y/z coordinate, and non-blank content
  after the declared frames.
  """
  try:
    with open(path, "rb") as f:
      text = f.read().decode("latin-1")
  except OSError as e:
    raise io.DataError(f"{path}: cannot read: {e}") from e
  if not text.strip():
    raise io.DataError(f"{path}: line 1: empty file")
  cursor = _Lines(path, text.splitlines())
  num_frames = cursor.integer("the frame count")
  frames = []
  for t in range(num_frames):
    num_bodies = cursor.integer(f"the body count of frame {t + 1} of {num_frames}")
    frames.append([_parse_body(cursor, f"body {m + 1} of frame {t + 1}")
                   for m in range(num_bodies)])
  for index in range(cursor.pos, len(cursor.lines)):
    if cursor.lines[index].strip():
      raise cursor.error(index + 1, f"unexpected content after the {num_frames} declared frames: "
                         f"{cursor.lines[index].strip()[:60]!r}")
  return SkeletonFile(path=path, frames=frames)


# ----------------------------------------------------------------------------------------------
# Body selection.


def _file_order_slots(skeleton: SkeletonFile, max_bodies: int) -> list[dict[int, np.ndarray]]:
  """The authors' rule: the m-th body listed in a frame fills slot m."""
  slots = [{} for _ in range(max_bodies)]
  for t, bodies in enumerate(skeleton.frames):
    for m, body in enumerate(bodies[:max_bodies]):
      slots[m][t] = body.xyz
  return slots


def motion_energy(xyz: np.ndarray) -> float:
  """Sum over joints and axes of the temporal variance of a (T, V, 3) track."""
  return float(xyz.var(axis=0).sum()) if len(xyz) > 1 else 0.0


def _energy_slots(skeleton: SkeletonFile, max_bodies: int,
                  min_track_frames: int) -> list[dict[int, np.ndarray]]:
  """Ranks tracks (bodies grouped by tracking id) by motion energy and fills the slots greedily.

  Tracks shorter than `min_track_frames` (sensor noise, typically) are used only when no track
  is that long. A track goes to the first slot whose frames it does not overlap, so a person
  who is re-detected under a new id continues in the same slot.
  """
  tracks: dict[tuple[int, int], dict[int, np.ndarray]] = {}
  for t, bodies in enumerate(skeleton.frames):
    seen: dict[int, int] = {}
    for body in bodies:
      # A repeated id within one frame is a distinct body; keep it as a separate track.
      k = seen[body.tracking_id] = seen.get(body.tracking_id, -1) + 1
      tracks.setdefault((body.tracking_id, k), {})[t] = body.xyz
  if not tracks:
    return [{} for _ in range(max_bodies)]
  candidates = [track for track in tracks.values() if len(track) >= min_track_frames]
  if not candidates:
    candidates = list(tracks.values())
  candidates.sort(key=lambda track: motion_energy(np.stack(list(track.values()))), reverse=True)
  slots: list[dict[int, np.ndarray]] = [{} for _ in range(max_bodies)]
  for track in candidates:
    for slot in slots:
      if slot.keys().isdisjoint(track.keys()):
        slot.update(track)
        break
  return slots


def to_array(skeleton: SkeletonFile, *, body_selection: str = "energy",
             drop_empty_frames: bool | None = None, max_bodies: int = MAX_BODIES,
             min_track_frames: int = 11) -> np.ndarray:
  """x, y, z of up to `max_bodies` bodies: (T', M, 25, 3) float32, zeros where a slot is empty.

  Args:
    skeleton: a parsed file.
    body_selection: 'energy' (default) groups bodies by tracking id, keeps the tracks of highest
      motion energy (ignoring tracks shorter than `min_track_frames` unless all are) and places
      each at its own frames; 'file_order' is the authors' rule (the m-th body listed in a frame
      goes to slot m; no denoising).
    drop_empty_frames: drop frames where no selected body is present (pyskl practice). None (the
      default) means True for 'energy' and False for 'file_order', so that 'file_order'
      reproduces the authors' arrays exactly.
    max_bodies: M.
    min_track_frames: see `body_selection`.

  Raises:
    DataError if the file has no body in any frame.
  """
  if body_selection not in BODY_SELECTIONS:
    raise ValueError(f"body_selection must be one of {BODY_SELECTIONS}, got {body_selection!r}")
  if drop_empty_frames is None:
    drop_empty_frames = body_selection == "energy"
  if body_selection == "energy":
    slots = _energy_slots(skeleton, max_bodies, min_track_frames)
  else:
    slots = _file_order_slots(skeleton, max_bodies)
  if not any(slots):
    raise io.DataError(f"{skeleton.path}: no body in any of the {skeleton.num_frames} frames")
  out = np.zeros((skeleton.num_frames, max_bodies, NUM_JOINTS, 3), dtype=np.float32)
  for m, slot in enumerate(slots):
    for t, xyz in slot.items():
      out[t, m] = xyz
  if drop_empty_frames:
    present = sorted(set().union(*slots))
    out = out[present]
  return out


def load_sample(path: str, *, body_selection: str = "energy",
                drop_empty_frames: bool | None = None, max_frames: int = 300) -> np.ndarray:
  """Parses `path` into one (3, max_frames, 25, 2) float32 sample (zero-padded / centre-cropped)."""
  array = to_array(parse_skeleton_file(path), body_selection=body_selection,
                   drop_empty_frames=drop_empty_frames)
  array = io.pad_or_crop_frames(array, max_frames)  # (T, M, V, C)
  return np.ascontiguousarray(array.transpose(3, 0, 2, 1))
