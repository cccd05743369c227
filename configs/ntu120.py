"""NTU RGB+D 120. `--config=configs/ntu120.py:SPLIT,STREAM`, SPLIT xset (default) | xsub."""

from configs import default
from configs.ntu60 import parse_argument


def get_config(argument=None):
  config = default.get_config()
  split, stream = parse_argument(argument, ("xset", "xsub"), "xset")
  config.data.dataset = "ntu120"
  config.data.root = "data/ntu120"
  config.data.split = split
  config.data.stream = stream
  config.data.num_classes = 120
  return config
