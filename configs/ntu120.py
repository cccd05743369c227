"""NTU RGB+D 120. `--config=configs/ntu120.py:SPLIT,STREAM`, SPLIT xset (default) | xsub."""

from configs import common, default


def get_config(argument=None):
  config = default.get_config()
  common.set_dataset(config.data, "ntu120", argument)
  return config
