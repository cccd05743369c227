"""MSR Action3D (Kinect v1 order, 20 joints, one body), cross-subject (odd subjects train).

Sized for a CPU run: 284 training sequences, so a small memory bank and batch.
"""

from configs import common, default


def get_config(argument=None):
  config = default.get_config()
  common.set_dataset(config.data, "msr", argument)

  config.batch_size = 32
  # 50 epochs of MoCo v2 (no decay), then 90 with the actionlet on a fresh schedule (x0.1 at 80
  # of them): about 25 min on 2 CPU cores. Against 100 + 40 (x0.1 at 90, then at 30 of 40),
  # the same 140 epochs, 3 seeds: ActCLR linear +6.2 and KNN +1.6 on average, mostly one seed
  # (README, "Where phase 2 starts"). The paper gives phase 2 more than half (300 + 350).
  config.num_epochs = 140
  config.actionlet.start_epoch = 50
  config.lr_decay_epochs = ()
  config.actionlet.lr_decay_epochs = (80,)
  config.moco.bank_size = 256
  # A few hundred steps only: with 0.999 the offline network would stay ~80-90% at its
  # random init (0.999^n); 0.99 lets keys and actionlets follow the online network.
  config.moco.momentum = 0.99
  config.knn_every_epochs = 25
  config.checkpoint_every_epochs = 25
  config.log_every_steps = 20
  # Evaluation sized for a few CPU minutes per protocol: few finetuning epochs, small batches
  # (284 training sequences).
  config.eval.finetune.epochs = 10
  config.eval.finetune.decay_epochs = (6, 8)
  config.eval.finetune.batch_size = 32
  config.eval.linear.batch_size = 32
  return config
