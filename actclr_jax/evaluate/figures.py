"""The visualize evaluator: figures of a pretrained network, drawn by actclr_jax/visualize.py.

Writes PNGs to `{workdir}/figures/`: the static anchor (paper Fig. 4), the offline network's
actionlets of a few val samples on the skeleton and as (T x V) heat maps (Fig. 5), and a PCA
of the val encoder features.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from actclr_jax import actionlet as actionlet_lib
from actclr_jax.data import io, streams
from actclr_jax.data.prepare import synthetic
from actclr_jax.evaluate import base, features, pretrained
from actclr_jax.models import builder


class Visualize(base.Evaluator):
  """Figures and the actionlet's IoU with the ground truth (where the data set has one)."""

  name = "visualize"

  def run(self, config, workdir: str) -> dict:
    # Here, not at the top: every training process imports this module (through the monitor's
    # evaluators), and matplotlib adds ~0.9 s to each start.
    from actclr_jax import visualize  # pylint: disable=g-import-not-at-top
    start = time.time()
    pre = pretrained.restore(workdir, config)
    data = features.load_eval_data(config)
    layout = data.layout
    figures = os.path.join(workdir, "figures")
    os.makedirs(figures, exist_ok=True)
    if tuple(pre.anchor.shape[1:3]) != tuple(data.val.data.shape[2:4]):
      raise io.DataError(f"{pre.path}: anchor of shape {pre.anchor.shape} does not fit the val "
                         f"data {data.val.data.shape} of {data.val.path} (config key "
                         f"data.frames)")
    written = [visualize.plot_skeleton_sequence(
        os.path.join(figures, "anchor.png"), pre.anchor[..., 0], layout,
        title=f"static anchor (average {config.data.stream}), step {pre.step}")]

    n = min(config.eval.visualize.samples, len(data.val))
    joints = np.asarray(data.val.data[:n])
    x = streams.to_stream(joints, config.data.stream, layout)
    model = builder.build_model(config)
    fn = jax.jit(lambda pre, x: actionlet_lib.inference_actionlet(
        pre, x, config=config, model=model, layout=layout))
    masks = np.asarray(fn(pre, x))[..., 0]  # (n, T, V), body 0
    class_names = synthetic.CLASS_NAMES if config.data.dataset == "synthetic" else None
    truths = None if data.val.actionlet is None else np.asarray(data.val.actionlet[:n]) > 0
    result = {"actionlet_area": float(masks.mean())}
    if truths is not None:
      result["actionlet_iou"] = float(np.mean(actionlet_lib.iou(masks > 0.5, truths)))
    for i in range(n):
      label = int(data.val.labels[i])
      name = class_names[label] if class_names else f"class {label}"
      stem = os.path.join(figures, f"val{i}")
      written.append(visualize.plot_skeleton_sequence(
          stem + "_actionlet.png", joints[i, ..., 0], layout, highlight=masks[i],
          title=f"{data.val.names[i]} ({name}): actionlet joints in red"))
      written.append(visualize.plot_mask_heatmap(
          stem + "_mask.png", masks[i], title=f"{data.val.names[i]} actionlet (T x V)",
          vmin=0.0, vmax=1.0))
      if truths is not None:
        written.append(visualize.plot_mask_heatmap(
            stem + "_truth.png", truths[i], title=f"{data.val.names[i]} ground truth",
            vmin=0.0, vmax=1.0))
    val_features = features.encoder_features(pre, data.val, data, config)
    written.append(visualize.plot_embedding(
        os.path.join(figures, "val_pca.png"), val_features, data.val.labels,
        class_names=class_names, title=f"PCA of val encoder features, step {pre.step}"))
    result["figures"] = [os.path.relpath(p, workdir) for p in written]
    return self.finish(config, workdir, pre.step, pre.path, result, start)
