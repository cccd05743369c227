"""Figures: skeleton sequences with actionlet joints (paper Fig. 4/5), mask heat maps, embeddings.

Figures are drawn on an Agg canvas without pyplot (no global state, no display needed)
and written atomically as PNG. Every function returns the path it wrote.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, to_rgb
from matplotlib.figure import Figure

from actclr_jax.data.io import atomic_path
from actclr_jax.graph import Layout

NEUTRAL_COLOR = "#b4b4b4"  # joints outside the actionlet
MID_COLOR = "#ffd400"      # half-weight actionlet joints
HIGHLIGHT_COLOR = "#e00000"  # full actionlet joints
BONE_COLOR = "#505a6e"
HIGHLIGHT_CMAP = LinearSegmentedColormap.from_list(
    "actionlet", [NEUTRAL_COLOR, MID_COLOR, HIGHLIGHT_COLOR])


def _new_figure(width: float, height: float, dpi: int) -> Figure:
  fig = Figure(figsize=(width, height), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str, dpi: int) -> str:
  with atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=dpi)
  return path


def _select_frames(seq: np.ndarray, frames: int) -> np.ndarray:
  """`frames` evenly spaced indices among the frames where the body is non-zero."""
  valid = np.flatnonzero(np.any(seq != 0, axis=(0, 2)))
  if valid.size == 0:
    valid = np.arange(seq.shape[1])
  picks = np.round(np.linspace(0, valid.size - 1, min(frames, valid.size))).astype(int)
  return valid[np.unique(picks)]


def _highlight_per_frame(highlight, num_frames: int, num_joints: int) -> np.ndarray:
  """(T, V) float values in [0, 1] from a (V,) or (T', V) bool/float mask.

  A mask at another temporal resolution (e.g. the encoder's 13 frames) is mapped to
  the sequence's frames by nearest index.
  """
  mask = np.asarray(highlight, dtype=np.float32)
  if mask.ndim == 1:
    mask = mask[None]
  if mask.ndim != 2 or mask.shape[1] != num_joints:
    raise ValueError(f"highlight: expected (T, {num_joints}) or ({num_joints},), "
                     f"got shape {np.shape(highlight)}")
  if not np.all(np.isfinite(mask)):
    raise ValueError("highlight: contains NaN or inf")
  rows = np.minimum((np.arange(num_frames) * mask.shape[0]) // num_frames, mask.shape[0] - 1)
  return np.clip(mask[rows], 0.0, 1.0)


def plot_skeleton_sequence(path: str, seq, layout: Layout, *, frames: int = 8,
                           highlight=None, title: str | None = None,
                           panel_size: float = 2.0, dpi: int = 100) -> str:
  """Draws one body at `frames` evenly spaced time steps, side by side (x right, y up).

  Args:
    path: output PNG.
    seq: (C, T, V) coordinates of one body, C >= 2 (x, y[, z]); all-zero frames
      (padding) are skipped when choosing the time steps.
    layout: the skeleton layout; bones come from layout.edges.
    frames: number of panels.
    highlight: optional (T, V) or (T', V) or (V,) bool/float mask in [0, 1]. Joints are
      coloured grey (0) -> yellow (0.5) -> red (1, HIGHLIGHT_COLOR) and drawn larger
      as the value grows. Without it every joint is grey.
    title: figure title.
    panel_size, dpi: each panel is panel_size inches square; the image is
      (frames * panel_size) x (1.25 * panel_size) inches at `dpi`.
  """
  seq = np.asarray(seq, dtype=np.float32)
  if seq.ndim != 3 or seq.shape[0] < 2 or seq.shape[2] != layout.num_joints:
    raise ValueError(f"seq: expected (C>=2, T, {layout.num_joints}) for layout "
                     f"{layout.name!r}, got shape {seq.shape}")
  if frames < 1:
    raise ValueError(f"frames must be >= 1, got {frames}")
  if not np.all(np.isfinite(seq)):
    raise ValueError("seq: contains NaN or inf")
  num_frames, num_joints = seq.shape[1], seq.shape[2]
  values = (np.zeros((num_frames, num_joints), np.float32) if highlight is None
            else _highlight_per_frame(highlight, num_frames, num_joints))
  chosen = _select_frames(seq, frames)

  xy = seq[:2][:, chosen]  # (2, F, V)
  lo, hi = xy.min(axis=(1, 2)), xy.max(axis=(1, 2))
  centre = (lo + hi) / 2
  half = max(float((hi - lo).max()) / 2, 1e-3) * 1.1

  fig = _new_figure(frames * panel_size, 1.25 * panel_size, dpi)
  # Panels fill the lower 80% of the figure; the band above holds the titles.
  for i, t in enumerate(chosen):
    ax = fig.add_axes([i / frames, 0.02, 1.0 / frames, 0.76])
    x, y = seq[0, t], seq[1, t]
    for child, parent in layout.edges:
      ax.plot([x[child], x[parent]], [y[child], y[parent]], color=BONE_COLOR, lw=1.2,
              zorder=1)
    order = np.argsort(values[t])  # strongest joints on top
    ax.scatter(x[order], y[order], c=values[t][order], cmap=HIGHLIGHT_CMAP, vmin=0.0,
               vmax=1.0, s=16 + 44 * values[t][order], edgecolors="none", zorder=2)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    ax.set_title(f"t={t}", fontsize=7, pad=2)
  if title:
    fig.suptitle(title, y=0.97, fontsize=9)
  return _save(fig, path, dpi)


def plot_mask_heatmap(path: str, mask, *, title: str | None = None, joint_labels=None,
                      figsize: tuple[float, float] = (8.0, 4.0), dpi: int = 100,
                      vmin: float | None = None, vmax: float | None = None) -> str:
  """T x V heat map of a mask (frames on the vertical axis, joints on the horizontal).

  Args:
    path: output PNG.
    mask: (T, V) values (e.g. an actionlet mask).
    title: axes title.
    joint_labels: V tick labels; default 1-based joint numbers.
    figsize, dpi: the image is figsize inches at dpi.
    vmin, vmax: colour range; default the data range.
  """
  mask = np.asarray(mask, dtype=np.float32)
  if mask.ndim != 2:
    raise ValueError(f"mask: expected (T, V), got shape {mask.shape}")
  if not np.all(np.isfinite(mask)):
    raise ValueError("mask: contains NaN or inf")
  num_frames, num_joints = mask.shape
  if joint_labels is None:
    joint_labels = [str(v + 1) for v in range(num_joints)]
  if len(joint_labels) != num_joints:
    raise ValueError(f"joint_labels: {len(joint_labels)} labels for {num_joints} joints")
  fig = _new_figure(*figsize, dpi)
  ax = fig.add_subplot(1, 1, 1)
  image = ax.imshow(mask, aspect="auto", origin="lower", cmap="inferno", vmin=vmin,
                    vmax=vmax, interpolation="nearest")
  ax.set_xticks(range(num_joints))
  ax.set_xticklabels(joint_labels, fontsize=6, rotation=90 if num_joints > 30 else 0)
  ax.set_xlabel("joint")
  ax.set_ylabel("frame")
  if title:
    ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  return _save(fig, path, dpi)


def pca_2d(features) -> np.ndarray:
  """(N, 2) projection of (N, D) features on their top two principal axes (numpy SVD).

  Each axis's sign is fixed so that its largest-magnitude loading is positive, which
  makes the result deterministic. Missing components (D < 2 or rank < 2) are zeros.
  """
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] == 0:
    raise ValueError(f"features: expected non-empty (N, D), got shape {features.shape}")
  if not np.all(np.isfinite(features)):
    raise ValueError("features: contains NaN or inf")
  centred = features - features.mean(0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  axes = vt[:2]
  signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])
  axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
  out = np.zeros((len(features), 2))
  out[:, :len(axes)] = centred @ axes.T
  return out


def plot_embedding(path: str, features, labels, *, class_names=None,
                   title: str | None = None, figsize: tuple[float, float] = (7.0, 5.0),
                   dpi: int = 100, point_size: float = 8.0) -> str:
  """2-D PCA scatter of (N, D) `features` coloured by integer `labels` (N,), with a legend.

  class_names maps a class id to its legend name (a sequence indexed by id or a
  dict); default the id itself. The image is figsize inches at dpi.
  """
  labels = np.asarray(labels)
  points = pca_2d(features)
  if labels.shape != (len(points),):
    raise ValueError(f"labels: expected shape ({len(points)},), got {labels.shape}")
  classes = np.unique(labels)
  if len(classes) <= 10:
    colours = [f"C{i}" for i in range(len(classes))]
  else:
    cmap = "tab20" if len(classes) <= 20 else "gist_ncar"
    colours = [colormaps[cmap](x) for x in np.linspace(0, 1, len(classes), endpoint=False)]
  fig = _new_figure(*figsize, dpi)
  ax = fig.add_axes([0.08, 0.08, 0.62, 0.84])
  for colour, c in zip(colours, classes):
    name = str(c) if class_names is None else str(class_names[int(c)])
    ax.scatter(*points[labels == c].T, s=point_size, color=colour, label=name,
               edgecolors="none")
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  if title:
    ax.set_title(title, fontsize=9)
  ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, markerscale=1.5,
            ncol=int(np.ceil(len(classes) / 25)), frameon=False)
  return _save(fig, path, dpi)


def rgb(colour) -> np.ndarray:
  """(3,) float RGB in [0, 1] of a matplotlib colour."""
  return np.asarray(to_rgb(colour))
