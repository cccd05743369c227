"""Tests for the figure functions: files are written, sized as documented, and coloured."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

from actclr_jax import visualize
from actclr_jax.graph import get_layout


def _walking_sequence(layout, num_frames=20):
  """(3, T, V): a rest pose from the bone tree, with the right arm (part 2) swinging."""
  rng = np.random.default_rng(0)
  base = rng.normal(size=(3, layout.num_joints)) * 0.3
  seq = np.repeat(base[:, None], num_frames, axis=1)
  arm = list(layout.parts[2])
  seq[0, :, arm] += np.sin(np.linspace(0, 3, num_frames))[None, :] * 0.5
  return seq.astype(np.float32)


def _has_colour(img, colour, tol=0.06):
  return bool(np.any(np.all(np.abs(img[..., :3] - visualize.rgb(colour)) < tol, axis=-1)))


def test_skeleton_sequence_size_and_highlight(tmp_path):
  layout = get_layout("ntu")
  seq = _walking_sequence(layout)
  mask = np.zeros((20, layout.num_joints), bool)
  mask[:, list(layout.parts[2])] = True
  path = visualize.plot_skeleton_sequence(str(tmp_path / "seq.png"), seq, layout, frames=4,
                                          highlight=mask, title="actionlet", panel_size=2.0,
                                          dpi=50)
  assert os.path.getsize(path) > 0
  img = mpimg.imread(path)
  assert img.shape == (125, 400, 4)  # (1.25 * 2 * 50, 4 * 2 * 50)
  assert _has_colour(img, visualize.HIGHLIGHT_COLOR)
  assert _has_colour(img, visualize.NEUTRAL_COLOR)
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]  # no temp left

  plain = mpimg.imread(visualize.plot_skeleton_sequence(
      str(tmp_path / "plain.png"), seq, layout, frames=4, panel_size=2.0, dpi=50))
  assert not _has_colour(plain, visualize.HIGHLIGHT_COLOR)


def test_skeleton_sequence_float_mask_other_resolution(tmp_path):
  layout = get_layout("kinect_v1")
  seq = _walking_sequence(layout, num_frames=50)
  seq[:, 40:] = 0  # padding frames are skipped
  mask = np.zeros((13, layout.num_joints), np.float32)
  mask[:, 3] = 0.5  # half weight -> the middle (yellow) colour
  img = mpimg.imread(visualize.plot_skeleton_sequence(
      str(tmp_path / "f.png"), seq, layout, frames=3, highlight=mask, dpi=40))
  assert img.shape == (100, 240, 4)
  assert _has_colour(img, visualize.MID_COLOR, tol=0.08)
  assert not _has_colour(img, visualize.HIGHLIGHT_COLOR)
  with pytest.raises(ValueError, match="highlight"):
    visualize.plot_skeleton_sequence(str(tmp_path / "bad.png"), seq, layout,
                                     highlight=np.ones((50, 7)))
  assert not os.path.exists(tmp_path / "bad.png")


def test_mask_heatmap(tmp_path):
  mask = np.linspace(0, 1, 50 * 25).reshape(50, 25)
  path = visualize.plot_mask_heatmap(str(tmp_path / "m.png"), mask, title="mask",
                                     figsize=(6.0, 3.0), dpi=50)
  img = mpimg.imread(path)
  assert img.shape == (150, 300, 4)
  assert img[..., :3].std() > 0.1  # not a blank canvas


def test_embedding_and_pca(tmp_path):
  rng = np.random.default_rng(0)
  # Variance mostly along feature 3, then feature 0: PCA recovers them in that order.
  x = rng.normal(size=(200, 6)) * np.array([2.0, 0.1, 0.1, 5.0, 0.1, 0.1])
  pts = visualize.pca_2d(x)
  assert pts.shape == (200, 2)
  np.testing.assert_allclose(np.abs(np.corrcoef(pts[:, 0], x[:, 3])[0, 1]), 1.0, atol=1e-3)
  np.testing.assert_allclose(np.abs(np.corrcoef(pts[:, 1], x[:, 0])[0, 1]), 1.0, atol=1e-2)
  np.testing.assert_allclose(visualize.pca_2d(x), pts)  # deterministic
  # The sign convention fixes the axes, so negating the data negates the projection.
  np.testing.assert_allclose(visualize.pca_2d(-x), -pts, atol=1e-9)
  labels = (x[:, 3] > 0).astype(int) + 2 * (x[:, 0] > 0)
  path = visualize.plot_embedding(str(tmp_path / "e.png"), x, labels,
                                  class_names=["a", "b", "c", "d"], title="pca",
                                  figsize=(5.0, 4.0), dpi=40)
  img = mpimg.imread(path)
  assert img.shape == (160, 200, 4)
  assert _has_colour(img, "C0") and _has_colour(img, "C3")


def test_training_does_not_import_matplotlib():
  """Only the visualize evaluator draws: a training process (main.py, the trainer and the
  monitor's evaluators) starts without matplotlib, which adds ~0.9 s to every start."""
  code = ("import sys; import main; from actclr_jax.train import trainer; "
          "from actclr_jax.evaluate import evaluators; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"
