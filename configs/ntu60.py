"""NTU RGB+D 60. `--config=configs/ntu60.py:SPLIT,STREAM`, SPLIT xview (default) | xsub,
STREAM joint (default) | motion | bone."""

from configs import default


def parse_argument(argument, splits, default_split):
  parts = [p for p in (argument or "").split(",") if p]
  split = next((p for p in parts if p in splits), default_split)
  stream = next((p for p in parts if p in ("joint", "motion", "bone")), "joint")
  unknown = [p for p in parts if p not in splits and p not in ("joint", "motion", "bone")]
  if unknown:
    raise ValueError(f"Unknown config argument(s) {unknown}: expected one of {splits} and a stream")
  return split, stream


def get_config(argument=None):
  config = default.get_config()
  split, stream = parse_argument(argument, ("xview", "xsub"), "xview")
  config.data.dataset = "ntu60"
  config.data.root = "data/ntu60"
  config.data.split = split
  config.data.stream = stream
  config.data.layout = "ntu"
  config.data.num_classes = 60
  return config
