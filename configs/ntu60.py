"""NTU RGB+D 60. `--config=configs/ntu60.py:SPLIT,STREAM`, SPLIT xview (default) | xsub,
STREAM joint (default) | motion | bone."""

from configs import common, default


def get_config(argument=None):
  config = default.get_config()
  common.set_dataset(config.data, "ntu60", argument)
  return config
