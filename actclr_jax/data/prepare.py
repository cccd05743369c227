"""Command line: prepare a dataset into split arrays, then write the 50-frame caches.

  python -m actclr_jax.data.prepare ntu60 --raw_dir=RAW --out_dir=OUT [--skip_bad]
      [--body_selection=energy|file_order] [--max_frames=300] [--num_workers=N] [--no_preprocess]
  python -m actclr_jax.data.prepare synthetic --out_dir=OUT [--seed=0] [--num_samples=N]

Datasets: ntu60, ntu120, pku_mmd1, pku_mmd2, nwucla, msr, synthetic. Each writes
`{out_dir}/{split}/{train,val}_data.npy` and `{train,val}_label.pkl`; then, unless
--no_preprocess, `preprocess.write_cache` adds `{part}_data_t50.npy` for every split and part.
A JSON copy of the summary goes to `{out_dir}/prepare_summary.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Callable, Sequence

from actclr_jax.data import io


def _ntu(variant: str) -> Callable[[argparse.Namespace], dict]:
  def run(args):
    kwargs = {"variant": variant, "skip_bad": args.skip_bad}
    for key in ("body_selection", "max_frames", "num_workers"):
      if getattr(args, key) is not None:
        kwargs[key] = getattr(args, key)
    return _module("ntu").prepare(args.raw_dir, args.out_dir, **kwargs)
  return run


def _raw(module: str, **fixed) -> Callable[[argparse.Namespace], dict]:
  def run(args):
    kwargs = dict(fixed, skip_bad=args.skip_bad)
    if args.max_frames is not None:
      kwargs["max_frames"] = args.max_frames
    return _module(module).prepare(args.raw_dir, args.out_dir, **kwargs)
  return run


def _synthetic(args: argparse.Namespace) -> dict:
  kwargs = {}
  if args.num_samples is not None:
    kwargs["num_samples"] = args.num_samples
  if args.seed is not None:
    kwargs["seed"] = args.seed
  return _module("synthetic").prepare(args.out_dir, **kwargs)


def _module(name: str):
  # Imported lazily so that one dataset's module (or its absence) cannot break the others.
  return importlib.import_module(f"actclr_jax.data.{name}")


# dataset -> (function of the parsed arguments returning the summary, options it accepts
# beyond --out_dir and --no_preprocess).
DATASETS: dict[str, tuple[Callable[[argparse.Namespace], dict], frozenset[str]]] = {
    "ntu60": (_ntu("ntu60"), frozenset(
        {"raw_dir", "skip_bad", "body_selection", "max_frames", "num_workers"})),
    "ntu120": (_ntu("ntu120"), frozenset(
        {"raw_dir", "skip_bad", "body_selection", "max_frames", "num_workers"})),
    "pku_mmd1": (_raw("pku_mmd", part=1), frozenset({"raw_dir", "skip_bad", "max_frames"})),
    "pku_mmd2": (_raw("pku_mmd", part=2), frozenset({"raw_dir", "skip_bad", "max_frames"})),
    "nwucla": (_raw("nwucla"), frozenset({"raw_dir", "skip_bad", "max_frames"})),
    "msr": (_raw("msr"), frozenset({"raw_dir", "skip_bad", "max_frames"})),
    "synthetic": (_synthetic, frozenset({"seed", "num_samples"})),
}

_OPTIONAL = ("raw_dir", "skip_bad", "body_selection", "max_frames", "num_workers", "seed",
             "num_samples")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m actclr_jax.data.prepare",
      description="Prepare a skeleton dataset into {split}/{train,val}_data.npy + _label.pkl.")
  parser.add_argument("dataset", choices=sorted(DATASETS))
  parser.add_argument("--out_dir", required=True, help="output folder")
  parser.add_argument("--raw_dir", default=None, help="folder of raw files (not for synthetic)")
  parser.add_argument("--skip_bad", action="store_true", default=None,
                      help="skip (and report) bad files instead of failing")
  parser.add_argument("--body_selection", choices=("energy", "file_order"), default=None,
                      help="NTU only: 'energy' (default; 2 most moving tracked bodies, empty "
                           "frames dropped) or 'file_order' (the authors' rule)")
  parser.add_argument("--max_frames", type=int, default=None,
                      help="pad / centre-crop every sample to this many frames (default 300)")
  parser.add_argument("--num_workers", type=int, default=None,
                      help="NTU only: parsing processes (default: all cores)")
  parser.add_argument("--seed", type=int, default=None, help="synthetic only (default 0)")
  parser.add_argument("--num_samples", type=int, default=None, help="synthetic only")
  parser.add_argument("--no_preprocess", action="store_true",
                      help="do not write the 50-frame caches")
  return parser


def write_caches(out_dir: str, summary: dict) -> list[str]:
  """Writes the 50-frame cache of every split and part in `summary`; returns their paths."""
  from actclr_jax import graph  # pylint: disable=g-import-not-at-top
  from actclr_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  layout = graph.get_layout(summary["layout"])
  paths = []
  for split, parts in summary["splits"].items():
    for part in ("train", "val"):
      if part in parts:
        paths.append(preprocess.write_cache(os.path.join(out_dir, split), part, layout))
  return paths


def format_summary(dataset: str, out_dir: str, summary: dict) -> str:
  """A few human-readable lines: splits and sizes, skipped and bad files."""
  lines = [f"{dataset} -> {out_dir} (layout {summary['layout']})"]
  if "body_selection" in summary:
    lines[0] += f", body selection {summary['body_selection']}"
  for split, parts in summary["splits"].items():
    lines.append(f"  {split}: " + ", ".join(f"{part} {n}" for part, n in parts.items()))
  if summary.get("skipped_missing"):
    lines.append(f"  skipped {len(summary['skipped_missing'])} samples listed as missing")
  bad = summary.get("bad") or []
  lines.append(f"  bad files skipped: {len(bad)}")
  for entry in bad:
    lines.append(f"    {entry[-1] if isinstance(entry, (tuple, list)) else entry}")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (1 with the message on a DataError)."""
  parser = build_parser()
  args = parser.parse_args(argv)
  function, accepted = DATASETS[args.dataset]
  for option in _OPTIONAL:
    if getattr(args, option) is not None and option not in accepted:
      parser.error(f"--{option} does not apply to {args.dataset}")
  if "raw_dir" in accepted and args.raw_dir is None:
    parser.error(f"{args.dataset} needs --raw_dir")
  if args.skip_bad is None and "skip_bad" in accepted:
    args.skip_bad = False
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

  try:
    summary = function(args)
    if not args.no_preprocess:
      summary["caches"] = write_caches(args.out_dir, summary)
  except io.DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  with io.atomic_path(os.path.join(args.out_dir, "prepare_summary.json")) as tmp:
    with open(tmp, "w") as f:
      json.dump(dict(summary, dataset=args.dataset), f, indent=1, default=str)
  print(format_summary(args.dataset, args.out_dir, summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
