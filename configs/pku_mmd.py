"""PKU-MMD. `--config=configs/pku_mmd.py:SPLIT,STREAM`, SPLIT xsub (default) | xview;
`--config.data.root` points at a prepared part I or part II folder."""

from configs import common, default


def get_config(argument=None):
  config = default.get_config()
  common.set_dataset(config.data, "pku_mmd1", argument)
  return config
