"""What the data-set configs share: the `SPLIT,STREAM` config argument and the data fields
that follow from the data set's entry in `actclr_jax/data/registry.py`."""

from __future__ import annotations

import ml_collections

from actclr_jax.data import registry
from actclr_jax.data.streams import STREAMS


def parse_argument(argument: str | None, splits: tuple[str, ...],
                   default_split: str) -> tuple[str, str]:
  """'xsub,bone' -> (split, stream): any order, either part optional (defaults: `default_split`,
  'joint'); anything else is an error."""
  parts = [p for p in (argument or "").split(",") if p]
  split = next((p for p in parts if p in splits), default_split)
  stream = next((p for p in parts if p in STREAMS), "joint")
  unknown = [p for p in parts if p not in splits and p not in STREAMS]
  if unknown:
    raise ValueError(f"Unknown config argument(s) {unknown}: expected one of {splits} and a stream")
  return split, stream


def set_dataset(data: ml_collections.ConfigDict, name: str, argument: str | None = None) -> None:
  """Fills config.data's dataset, root, split, stream, layout and num_classes for data set
  `name` (a registry name) and the config argument 'SPLIT,STREAM'."""
  dataset = registry.get(name)
  split, stream = parse_argument(argument, dataset.splits, dataset.default_split)
  data.dataset = dataset.name
  data.root = dataset.root  # holds {split}/{train,val}_data.npy and _label.pkl
  data.split = split
  data.stream = stream  # joint | motion | bone
  data.layout = dataset.layout
  data.num_classes = dataset.num_classes
