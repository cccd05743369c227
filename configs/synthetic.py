"""The built-in synthetic set (the README's main job): CPU-sized, finishes in minutes.

`--config=configs/synthetic.py:SPLIT,STREAM`, SPLIT xsub (default) | xview. The data set is
generated into data.root on first use.
"""

from configs import common, default


def get_config(argument=None):
  config = default.get_config()
  common.set_dataset(config.data, "synthetic", argument)
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
  # The monitor (KNN on all 1,600 sequences, actionlet IoU) costs ~40 s on 2 cores: run it on
  # the untrained network, at the end of phase 1 and at the end, to stay near 10 minutes.
  config.knn_every_epochs = 3
  config.checkpoint_every_epochs = 1
  config.log_every_steps = 5
  # Evaluation sized for a few CPU minutes per protocol (the published settings are in
  # configs/default.py); finetune/semi train the whole network, so they get few epochs.
  config.eval.finetune.epochs = 5
  config.eval.finetune.decay_epochs = (3, 4)
  config.eval.finetune.batch_size = 32
  config.eval.segment.window = config.data.frames
  config.eval.segment.stride = config.data.frames // 2
  config.eval.segment.synthetic_sequences = 20
  return config
