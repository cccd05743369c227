"""PKU-MMD. `--config=configs/pku_mmd.py:SPLIT,STREAM`, SPLIT xsub (default) | xview;
`--config.data.root` points at a prepared part I or part II folder."""

from configs import default
from configs.ntu60 import parse_argument


def get_config(argument=None):
  config = default.get_config()
  split, stream = parse_argument(argument, ("xsub", "xview"), "xsub")
  config.data.dataset = "pku_mmd1"
  config.data.root = "data/pku_mmd1"
  config.data.split = split
  config.data.stream = stream
  config.data.num_classes = 51
  return config
