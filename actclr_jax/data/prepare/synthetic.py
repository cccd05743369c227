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

The skeleton and its motion live in `synthetic_body.py` (joints, FK, subjects, idle motion,
cameras, noise) and `synthetic_actions.py` (the twelve actions); this module draws the samples,
writes the splits and summarises them.
"""

from __future__ import annotations

import os

import numpy as np

from actclr_jax.data import io, pipeline, registry
from actclr_jax.data.prepare import writer
from actclr_jax.data.prepare.synthetic_actions import ACTIONS, CLASS_JOINTS
from actclr_jax.data.prepare.synthetic_body import (
    LAYOUT, NUM_BODIES, NUM_JOINTS, NUM_SUBJECTS, NUM_VIEWS, euler_matrices, fk_soa,
    forward_kinematics, idle_motion, placement, sensor_noise, subject_offsets, subject_style,
    to_camera)

# The public names of the generator (its tests and callers use `synthetic.X`).
__all__ = (
    "CLASS_JOINTS", "CLASS_NAMES", "LAYOUT", "NUM_BODIES", "NUM_CLASSES", "NUM_JOINTS",
    "NUM_SUBJECTS", "NUM_VIEWS", "SPLITS", "euler_matrices", "forward_kinematics", "generate",
    "motion_energy_baseline", "motion_energy_features", "prepare", "split_masks",
    "subject_offsets", "summarize",
)

_SPEC = registry.get("synthetic")
SPLITS = _SPEC.splits
CLASS_NAMES = _SPEC.class_names
NUM_CLASSES = len(CLASS_NAMES)
_CHUNK = 256  # samples per FK batch; fixed, so that results do not depend on it


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
  amp = rng.uniform(0.75, 1.25, n_all) * subject_style()[subject - 1]
  noise = noise_std * rng.uniform(0.6, 1.4, (n_all, NUM_BODIES))
  camera = placement(rng, view)
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
    idle_angles, idle_root = idle_motion(rng, n, max_frames)
    act_angles, act_root = np.zeros_like(idle_angles), np.zeros_like(idle_root)
    for c, action in enumerate(ACTIONS):
      rows = np.flatnonzero(label[idx] == c)
      if len(rows):
        act_angles[:, :, rows], act_root[:, rows] = action(
            u[rows], amp[idx[rows], None], offsets[rows], rng)
    idle = fk_soa(idle_angles, idle_root, offsets)
    full = fk_soa(idle_angles + act_angles, idle_root + act_root, offsets)
    shift = np.sqrt(((full - idle) ** 2).sum(1))  # (V, n, T)
    actionlet[idx] = (shift > actionlet_threshold).transpose(1, 2, 0) & valid[:, :, None]

    cam = {k: v[idx] for k, v in camera.items()}
    bodies = [(full, offsets, cam, np.arange(n))]
    rows = np.flatnonzero(num_bodies[idx] == 2)
    if len(rows):
      other_offsets = offsets_all[bystander[idx[rows]] - 1]
      other = fk_soa(*idle_motion(rng, len(rows), max_frames), other_offsets)
      other_cam = dict(camera_height=cam["camera_height"][rows], tilt=cam["tilt"][rows],
                       **{k: v[idx[rows]] for k, v in bystander_place.items()})
      bodies.append((other, other_offsets, other_cam, rows))
    for m, (positions, body_offsets, place, rows) in enumerate(bodies):
      xyz = to_camera(positions, body_offsets, **place)
      xyz += sensor_noise(rng, len(rows), max_frames, noise[idx[rows], m])
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
      splits[split][part] = writer.write_split(
          os.path.join(out_dir, split), part, generated["data"][mask], names[mask],
          generated["label"][mask], generated["data"].shape[1:],
          extras={"actionlet": (generated["actionlet"][mask], np.uint8)})
  return {"layout": _SPEC.layout, "splits": splits, "classes": list(CLASS_NAMES),
          "num_samples": num_samples, "seed": seed}


def _prepared_part(root: str, split: str,
                   part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(data (N, C, T, V, M) memory map, labels (N,), actionlet (N, T, V)) of a prepared part."""
  arrays = pipeline.load_split(root, split, part, LAYOUT, frames=None)
  where = os.path.join(root, split, f"{part}_actionlet.npy")
  if arrays.actionlet is None:
    raise io.DataError(f"{where}: missing; the synthetic set writes it (prepare synthetic)")
  if arrays.actionlet.shape != (len(arrays), arrays.data.shape[2], arrays.data.shape[3]):
    raise io.DataError(f"{where}: shape {arrays.actionlet.shape} does not match data "
                       f"{arrays.data.shape} (expected (N, T, V))")
  return arrays.data, arrays.labels, arrays.actionlet


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
    parts = {split: [_prepared_part(source, split, part) for part in ("train", "val")]
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
