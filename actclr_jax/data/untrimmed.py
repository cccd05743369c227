"""Synthetic untrimmed sequences for the segmentation protocol, shaped like PKU-MMD's arrays.

PKU-MMD's untrimmed videos are loaded by `prepare.pku_mmd.load_untrimmed`; for the synthetic data set
this module builds the equivalent: consecutive synthetic clips, labelled per frame.
"""

from __future__ import annotations

import numpy as np

from actclr_jax.data.prepare import synthetic

BACKGROUND = -1  # per-frame label of frames outside every action (PKU-MMD convention)


def synthetic_untrimmed(num_sequences: int, actions_per_sequence: int, *, clip_frames: int,
                        seed: int, subjects: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """Untrimmed sequences made of consecutive synthetic clips.

  Each sequence concatenates the valid frames of `actions_per_sequence` clips of
  `synthetic.generate` from subjects 'odd' (train) or 'even' (val). A frame's label is the
  clip's class where the clip's ground-truth actionlet is non-empty, else BACKGROUND (the idle
  frames before and after each action).

  Returns:
    per sequence (frames (T, C=3, V=25, M=2) float32, labels (T,) int32).
  """
  if subjects not in ("odd", "even"):
    raise ValueError(f"synthetic_untrimmed: subjects={subjects!r}, expected 'odd' or 'even'")
  if num_sequences < 1 or actions_per_sequence < 1:
    raise ValueError(f"synthetic_untrimmed: {num_sequences} sequences of "
                     f"{actions_per_sequence} actions (config keys "
                     f"eval.segment.synthetic_sequences, eval.segment.synthetic_actions)")
  need = num_sequences * actions_per_sequence
  # Half the subjects are of the wanted parity; 3x leaves room for uneven draws.
  generated = synthetic.generate(3 * need, seed=seed, max_frames=clip_frames,
                                 min_frames=clip_frames // 2)
  parity = 1 if subjects == "odd" else 0
  chosen = np.flatnonzero(generated["subject"] % 2 == parity)[:need]
  if len(chosen) < need:
    raise ValueError(f"synthetic_untrimmed: only {len(chosen)} {subjects}-subject clips")
  clips = []
  for i in chosen:
    t = int(generated["num_frames"][i])
    moving = generated["actionlet"][i, :t].any(axis=1)
    labels = np.where(moving, generated["label"][i], BACKGROUND).astype(np.int32)
    clips.append((generated["data"][i, :, :t].transpose(1, 0, 2, 3), labels))
  return [(np.concatenate([c[0] for c in group]), np.concatenate([c[1] for c in group]))
          for group in (clips[k:k + actions_per_sequence]
                        for k in range(0, need, actions_per_sequence))]
