"""The built-in synthetic set (the README's main job): CPU-sized, finishes in minutes.

`--config=configs/synthetic.py:SPLIT,STREAM`, SPLIT xsub (default) | xview. The data set is
generated into data.root on first use.
"""

from configs import default
from configs.ntu60 import parse_argument


def get_config(argument=None):
  config = default.get_config()
  split, stream = parse_argument(argument, ("xsub", "xview"), "xsub")
  config.data.dataset = "synthetic"
  config.data.root = "data/synthetic"
  config.data.split = split
  config.data.stream = stream
  config.data.num_classes = 12
  config.data.synthetic_samples = 1600
  config.data.synthetic_seed = 0

  # About 10 minutes on 2 CPU cores: 5 epochs of ~800 sequences, the last 2 with the actionlet.
  config.batch_size = 32
  config.num_epochs = 5
  config.actionlet.start_epoch = 3
  config.lr_decay_epochs = (4,)
  config.moco.bank_size = 512
  # A few hundred steps only: with 0.999 the offline network would stay ~80-90% at its
  # random init (0.999^n); 0.99 lets keys and actionlets follow the online network.
  config.moco.momentum = 0.99
  config.knn_every_epochs = 1
  config.checkpoint_every_epochs = 1
  config.log_every_steps = 5
  # Evaluation sized for a few CPU minutes per protocol (the published settings are in
  # configs/default.py); finetune/semi train the whole network, so they get few epochs.
  config.eval.finetune_epochs = 5
  config.eval.finetune_decay_epochs = (3, 4)
  config.eval.finetune_batch_size = 32
  config.eval.segment_window = config.data.frames
  config.eval.segment_stride = config.data.frames // 2
  config.eval.segment_synthetic_sequences = 20
  return config
