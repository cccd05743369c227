"""NW-UCLA (Kinect v1, 20 joints, one body), views 1+2 train, view 3 val."""

from configs import common, default


def get_config(argument=None):
  config = default.get_config()
  common.set_dataset(config.data, "nwucla", argument)
  # About 1,000 training sequences: a bank no larger than the training set.
  config.moco.bank_size = 1024
  return config
