"""NTU RGB+D 60/120: sample names, split protocols, the missing-skeleton lists and `prepare`.

`prepare` writes the layout of the ActCLR code family: `{out_dir}/{split}/{train,val}_data.npy`
float32 (N, 3, max_frames, 25, 2) and `{train,val}_label.pkl` = (sample_names, labels), with
splits xsub/xview (NTU-60) or xsub/xset (NTU-120). The `.skeleton` parser and the body
selection are in `ntu_skeleton.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources
import multiprocessing
import os
import pickle
import re
from typing import Iterable

from absl import logging
import numpy as np

from actclr_jax.data import io, registry
from actclr_jax.data.prepare import common, writer
from actclr_jax.data.prepare.ntu_skeleton import (BODY_SELECTIONS, MAX_BODIES, NUM_JOINTS,
                                                  load_sample)

VARIANTS = ("ntu60", "ntu120")

# Split protocols (NOTES.md).
XSUB60_TRAIN_PERFORMERS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
XSUB120_TRAIN_PERFORMERS = XSUB60_TRAIN_PERFORMERS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
     89, 91, 92, 93, 94, 95, 97, 98, 100, 103))
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
# NTU-60 is the first 17 setups and 60 actions of NTU-120.
NTU60_MAX_SETUP = 17
NTU60_MAX_ACTION = 60

_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")


# ----------------------------------------------------------------------------------------------
# Names, labels, splits.


@dataclasses.dataclass(frozen=True)
class SampleInfo:
  """The fields of a sample name `SsssCcccPpppRrrrAaaa` (all 1-based ids)."""

  setup: int
  camera: int
  performer: int
  replication: int
  action: int

  @property
  def label(self) -> int:
    """0-based class label (action id - 1)."""
    return self.action - 1


def parse_sample_name(name: str) -> SampleInfo:
  """Parses `SsssCcccPpppRrrrAaaa` (a file's base name, with or without `.skeleton`)."""
  base = os.path.basename(name)
  if base.endswith(".skeleton"):
    base = base[:-len(".skeleton")]
  match = _NAME_RE.match(base)
  if not match:
    raise io.DataError(f"{name}: not an NTU sample name of the form SsssCcccPpppRrrrAaaa")
  return SampleInfo(*(int(g) for g in match.groups()))


def in_variant(info: SampleInfo, variant: str) -> bool:
  """Whether a sample belongs to NTU-60 ('ntu60') or NTU-120 ('ntu120')."""
  if variant == "ntu60":
    return info.setup <= NTU60_MAX_SETUP and info.action <= NTU60_MAX_ACTION
  if variant == "ntu120":
    return True
  raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def split_part(info: SampleInfo, split: str, variant: str = "ntu60") -> str:
  """'train' or 'val' for a sample under split 'xsub', 'xview' or 'xset'."""
  if split == "xsub":
    performers = XSUB60_TRAIN_PERFORMERS if variant == "ntu60" else XSUB120_TRAIN_PERFORMERS
    return "train" if info.performer in performers else "val"
  if split == "xview":
    return "train" if info.camera in XVIEW_TRAIN_CAMERAS else "val"
  if split == "xset":
    return "train" if info.setup % 2 == 0 else "val"
  raise ValueError(f"unknown NTU split {split!r}")


def missing_samples(variant: str) -> frozenset[str]:
  """The standard list of samples with missing skeletons (302 for NTU-60, 535 for NTU-120)."""
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  name = "NTU60_missing.txt" if variant == "ntu60" else "NTU120_missing.txt"
  text = (importlib.resources.files("actclr_jax.data.prepare") / "resources" / name).read_text()
  return frozenset(line.strip() for line in text.splitlines() if line.strip())


# ----------------------------------------------------------------------------------------------
# Preparing a whole folder.


def find_skeleton_files(raw_dir: str) -> dict[str, str]:
  """Maps sample name -> path for every `*.skeleton` under `raw_dir` (recursively)."""
  if not os.path.isdir(raw_dir):
    raise io.DataError(f"{raw_dir}: no such directory (expected the NTU .skeleton files)")
  found: dict[str, str] = {}
  duplicates = []
  for root, dirs, files in os.walk(raw_dir):
    dirs.sort()
    for file in sorted(files):
      if not file.endswith(".skeleton"):
        continue
      name, path = file[:-len(".skeleton")], os.path.join(root, file)
      if name in found:
        duplicates.append(f"{found[name]} and {path}")
      found[name] = path
  if duplicates:
    raise io.DataError(f"{raw_dir}: sample names occur more than once: {'; '.join(duplicates)}")
  return dict(sorted(found.items()))


def _load_indexed(item: tuple[int, str], **kwargs) -> tuple[int, np.ndarray | None, str | None]:
  """Pool worker: (index, sample or None, error message or None)."""
  index, path = item
  try:
    return index, load_sample(path, **kwargs), None
  except io.DataError as e:
    return index, None, str(e)


def _map(function, items: list, num_workers: int) -> Iterable:
  if num_workers <= 1 or len(items) <= 1:
    yield from map(function, items)
    return
  # 'spawn', because the caller may have started threads (JAX) that fork would copy badly.
  with multiprocessing.get_context("spawn").Pool(min(num_workers, len(items))) as pool:
    yield from pool.imap(function, items, chunksize=8)


def prepare(raw_dir: str, out_dir: str, *, variant: str = "ntu60", skip_bad: bool = False,
            body_selection: str = "energy", max_frames: int = 300,
            num_workers: int | None = None, drop_empty_frames: bool | None = None) -> dict:
  """Parses every NTU `.skeleton` file under `raw_dir` into the split arrays under `out_dir`.

  Samples of the other variant (NTU-120 files when `variant='ntu60'`) and those in the standard
  missing-skeleton list are skipped (each missing one is logged). Each split directory
  (`xsub`, `xview` for NTU-60; `xsub`, `xset` for NTU-120) receives `{train,val}_data.npy`
  float32 (N, 3, max_frames, 25, 2) and `{train,val}_label.pkl` = (sample_names, labels),
  sorted by sample name. Arrays are streamed to temporary names (`writer.ArrayWriter`) and renamed
  only at the end, so a failure leaves nothing half-written.

  Bad files (parse errors, no body) are all collected: if there are any and not `skip_bad`,
  one DataError lists them all and nothing is written; with `skip_bad` each is logged and the
  others are written.

  Returns:
    A summary: layout, variant, splits {split: {'train': n, 'val': n}}, bad [(file, message)],
    skipped_missing [names], skipped_other_variant (count), body_selection, drop_empty_frames,
    max_frames.
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  if body_selection not in BODY_SELECTIONS:
    raise ValueError(f"body_selection must be one of {BODY_SELECTIONS}, got {body_selection!r}")
  if drop_empty_frames is None:
    drop_empty_frames = body_selection == "energy"
  files = find_skeleton_files(raw_dir)
  if not files:
    raise io.DataError(f"{raw_dir}: no .skeleton files found")
  missing = missing_samples(variant)

  bad: list[tuple[str, str]] = []
  skipped_missing: list[str] = []
  other_variant = 0
  names, paths, infos = [], [], []
  for name, path in files.items():
    try:
      info = parse_sample_name(path)
    except io.DataError as e:
      bad.append((path, str(e)))
      continue
    if not in_variant(info, variant):
      other_variant += 1
      continue
    if name in missing:
      logging.info("skipping %s: listed among the %s samples with missing skeletons", name,
                   variant)
      skipped_missing.append(name)
      continue
    names.append(name)
    paths.append(path)
    infos.append(info)
  if other_variant:
    logging.info("skipping %d files that are not part of %s", other_variant, variant)
  if not names and not bad:
    raise io.DataError(f"{raw_dir}: no {variant} samples among the {len(files)} .skeleton files")

  splits = registry.get(variant).splits
  parts = ("train", "val")
  # part_of[i][split]: where sample i goes under each split.
  part_of = [{s: split_part(info, s, variant) for s in splits} for info in infos]
  dirs = [out_dir] + [os.path.join(out_dir, s) for s in splits]
  created = [d for d in dirs if not os.path.isdir(d)]
  ok = np.ones(len(names), dtype=bool)
  counts = {s: {} for s in splits}
  try:
    with contextlib.ExitStack() as stack:
      # Samples arrive in name order, so each writer receives its rows in name order; a bad
      # sample is never appended and its writer's file ends up that much shorter.
      writers = {s: {p: stack.enter_context(writer.ArrayWriter(
          os.path.join(out_dir, s, f"{p}_data.npy"), (3, max_frames, NUM_JOINTS, MAX_BODIES),
          capacity=sum(where[s] == p for where in part_of))) for p in parts} for s in splits}
      kept = {s: {p: [] for p in parts} for s in splits}

      worker = functools.partial(_load_indexed, body_selection=body_selection,
                                 drop_empty_frames=drop_empty_frames, max_frames=max_frames)
      if num_workers is None:
        num_workers = os.cpu_count() or 1
      results = _map(worker, list(enumerate(paths)), num_workers)
      for i, sample, error in io.progress(results, desc=f"parse {variant}", total=len(paths)):
        if error is not None:
          bad.append((paths[i], error))
          ok[i] = False
          continue
        for s, p in part_of[i].items():
          writers[s][p].append(sample)
          kept[s][p].append(i)

      if bad and not ok.any():
        listing = "\n  ".join(message for _, message in bad)
        raise io.DataError(f"{raw_dir}: all {len(bad)} {variant} files are bad:\n  {listing}")
      common.report_bad_files(bad, "NTU skeleton", skip_bad)

      for s in splits:
        for p in parts:
          counts[s][p] = len(kept[s][p])
          label_path = stack.enter_context(
              io.atomic_path(os.path.join(out_dir, s, f"{p}_label.pkl")))
          with open(label_path, "wb") as f:
            pickle.dump(([names[i] for i in kept[s][p]], [infos[i].label for i in kept[s][p]]), f)
  except BaseException:
    for directory in reversed(created):
      with contextlib.suppress(OSError):
        os.rmdir(directory)
    raise

  for s in splits:
    logging.info("%s/%s: train %d, val %d", variant, s, counts[s]["train"], counts[s]["val"])
  return {
      "layout": registry.get(variant).layout,
      "variant": variant,
      "splits": counts,
      "bad": bad,
      "skipped_missing": skipped_missing,
      "skipped_other_variant": other_variant,
      "body_selection": body_selection,
      "drop_empty_frames": drop_empty_frames,
      "max_frames": max_frames,
  }
