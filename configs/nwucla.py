"""NW-UCLA (Kinect v1, 20 joints, one body), views 1+2 train, view 3 val."""

from configs import default
from configs.ntu60 import parse_argument


def get_config(argument=None):
  config = default.get_config()
  split, stream = parse_argument(argument, ("xview",), "xview")
  config.data.dataset = "nwucla"
  config.data.root = "data/nwucla"
  config.data.split = split
  config.data.stream = stream
  config.data.layout = "kinect_v1"
  config.data.num_classes = 10
  # About 1,000 training sequences: a bank no larger than the training set.
  config.moco.bank_size = 1024
  return config
