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

  # Under 10 minutes on 2 CPU cores: 10 epochs of ~800 sequences, 3 of MoCo v2, then 7 with the
  # actionlet (its lr x0.1 for the last one). Phase 2 is where the features and the actionlet
  # improve: 3 + 2 epochs ended 4.0 points lower on standardised KNN over three seeds (README,
  # "The main job").
  config.batch_size = 32
  config.num_epochs = 10
  config.actionlet.start_epoch = 3
  config.lr_decay_epochs = ()
  config.actionlet.lr_decay_epochs = (6,)
  config.moco.bank_size = 512
  # A few hundred steps only: with 0.999 the offline network would stay ~80-90% at its
  # random init (0.999^n); 0.99 lets keys and actionlets follow the online network.
  config.moco.momentum = 0.99
  # Phase 2 starts from the initial random bank, not phase 1's keys (GAP keys of another view):
  # on six seeds the phase-2 loss fell on all six (four before, but its first epoch now starts
  # higher), the keys crowded less in epochs 5-6, standardised KNN +13.96 over the untrained
  # network (+12.94 before) and IoU 0.452 (0.441) (README, "A fresh bank at the switch"). MSR
  # keeps configs/default.py's False: its screen failed (README, "A fresh bank at the switch on
  # MSR").
  config.actionlet.reset_bank = True
  # A gentler shear than the family's 0.5, in every view that shears: on six seeds the
  # standardised KNN gains +12.94 over the untrained network with 0.1, +8.43 with 0.3, +2.98
  # with 0.5 (README, "A gentler shear" and "A shear of 0.1"). The real data sets keep 0.5: on
  # MSR (3 seeds) MoCo v2's linear gain over the random encoder was -0.5 with 0.3 and -10.1
  # with 0.1 (README, "The shear at 0.3 on MSR", "The shear at 0.1 on MSR").
  config.augment.shear_amount = 0.1
  # The phase-1 query without configs/default.py's bone_scale (stop 38, chosen on MSR): a
  # two-seed screen here passed, then seeds 2-5 under a rule failed, every seed below this
  # query (mean 88.68 against 90.54; README, "The bone-length change on seeds 2-5").
  config.augment.query_transforms = ("shear", "crop", "temporal_resize")
  # Nor its phase-1 key view (stop 39, chosen on MSR; not measured on the main job).
  config.augment.phase1_key_transforms = ("shear",)
  # The monitor (KNN on all 1,600 sequences, actionlet IoU) costs ~20 s on 2 cores: run it on
  # the untrained network, at the end of phase 1 (epoch 3), at epochs 6 and 9, and at the end.
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
