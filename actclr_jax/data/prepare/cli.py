"""Command line: prepare a data set into split arrays, then write the 50-frame caches.

  python -m actclr_jax.data.prepare ntu60 --raw_dir=RAW --out_dir=OUT [--skip_bad]
      [--body_selection=energy|file_order] [--max_frames=300] [--num_workers=N] [--no_preprocess]
  python -m actclr_jax.data.prepare synthetic --out_dir=OUT [--seed=0] [--num_samples=N]

Data sets: the names in `registry.DATASETS` (ntu60, ntu120, pku_mmd1, pku_mmd2, nwucla, msr,
synthetic). An option applies to a data set when its preparer takes it as an argument. Each
writes `{out_dir}/{split}/{train,val}_data.npy` and `{train,val}_label.pkl`; then, unless
--no_preprocess, `preprocess.write_cache` adds `{part}_data_t50.npy` for every split and part.
A JSON copy of the summary goes to `{out_dir}/prepare_summary.json`. Flags are absl flags,
parsed into a fresh FlagValues per call, so `main` can run more than once in one process.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from typing import Sequence

from absl import flags

from actclr_jax.data import io, registry

PROGRAM = "python -m actclr_jax.data.prepare"
# Options a preparer may take; the others (--out_dir, --no_preprocess) apply to every data set.
OPTIONS = ("raw_dir", "skip_bad", "body_selection", "max_frames", "num_workers", "seed",
           "num_samples")


def define_flags() -> flags.FlagValues:
  """A fresh FlagValues with the command's flags."""
  values = flags.FlagValues()
  flags.DEFINE_string("out_dir", None, "Output folder.", flag_values=values)
  flags.DEFINE_string("raw_dir", None, "Folder of raw files (not for synthetic).",
                      flag_values=values)
  flags.DEFINE_bool("skip_bad", False, "Skip (and report) bad files instead of failing.",
                    flag_values=values)
  flags.DEFINE_enum("body_selection", None, ("energy", "file_order"),
                    "NTU only: 'energy' (default; the 2 most moving tracked bodies, empty frames "
                    "dropped) or 'file_order' (the authors' rule).", flag_values=values)
  flags.DEFINE_integer("max_frames", None, "Pad / centre-crop every sample to this many frames "
                       "(default 300; synthetic 100).", lower_bound=1, flag_values=values)
  flags.DEFINE_integer("num_workers", None, "NTU only: parsing processes (default: all cores).",
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer("seed", None, "Synthetic only (default 0).", flag_values=values)
  flags.DEFINE_integer("num_samples", None, "Synthetic only (default 10000).", lower_bound=1,
                       flag_values=values)
  flags.DEFINE_bool("no_preprocess", False, "Do not write the 50-frame caches.",
                    flag_values=values)
  return values


def accepted_options(dataset: registry.DataSet) -> tuple[str, ...]:
  """The OPTIONS that `dataset`'s preparer takes (its fixed arguments excluded)."""
  parameters = inspect.signature(dataset.prepare_function().func).parameters
  fixed = dict(dataset.preparer_kwargs)
  return tuple(o for o in OPTIONS if o in parameters and o not in fixed)


def _usage_error(message: str) -> None:
  """Prints a usage line and the message to stderr and exits with status 2."""
  print(f"usage: {PROGRAM} {{{','.join(registry.DATASETS)}}} --out_dir=OUT [options]",
        file=sys.stderr)
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


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
  """Runs the command line on `argv` (without the program name; default sys.argv[1:]).

  Returns the exit status: 0, or 1 with the message on a DataError. A usage error (unknown
  data set or flag, an option that does not apply) exits with status 2.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  values = define_flags()
  if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv):
    print(__doc__)
    print(values.get_help())
    return 0
  try:
    positional = values([PROGRAM] + argv)[1:]
  except flags.Error as e:
    _usage_error(str(e))
  if len(positional) != 1:
    _usage_error(f"expected one data set, got {positional}")
  name = positional[0]
  if name not in registry.DATASETS:
    _usage_error(f"unknown data set {name!r}: expected one of {sorted(registry.DATASETS)}")
  dataset = registry.DATASETS[name]
  accepted = accepted_options(dataset)
  for option in OPTIONS:
    if values[option].present and option not in accepted:
      _usage_error(f"--{option} does not apply to {name}")
  if values.out_dir is None:
    _usage_error("--out_dir is required")
  if "raw_dir" in accepted and values.raw_dir is None:
    _usage_error(f"{name} needs --raw_dir")
  # Options left out keep the preparer's own defaults.
  kwargs = {o: values[o].value for o in accepted if values[o].present or o == "raw_dir"}
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

  try:
    summary = dataset.prepare_function()(out_dir=values.out_dir, **kwargs)
    if not values.no_preprocess:
      summary["caches"] = write_caches(values.out_dir, summary)
  except io.DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  with io.atomic_path(os.path.join(values.out_dir, "prepare_summary.json")) as tmp:
    with open(tmp, "w") as f:
      json.dump(dict(summary, dataset=name), f, indent=1, default=str)
  print(format_summary(name, values.out_dir, summary))
  return 0
