"""Offline preparation: raw-format readers and writers, run once per data set.

  cli.py           the command line, `python -m actclr_jax.data.prepare DATASET ...`
  writer.py        the one array writer: rows streamed to a .npy through a temporary name
  common.py        helpers of the readers: whitespace tables, bad-file reports, finite checks
  ntu.py           NTU RGB+D 60/120: names, splits, missing lists, `prepare`
  ntu_skeleton.py  NTU `.skeleton` parser and body selection
  pku_mmd.py       PKU-MMD I/II: trimmed clips and untrimmed sequences (and their reader)
  nwucla.py        NW-UCLA JSON files
  msr.py           MSR Action3D text files
  synthetic.py     the generated set: draws samples, writes splits, summarises
  synthetic_body.py, synthetic_actions.py   its skeleton, motion and twelve actions

Which data sets exist, and their layouts, classes and splits, is `actclr_jax/data/registry.py`.
"""
