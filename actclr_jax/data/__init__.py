"""Data, in two halves.

Offline, once per data set (`prepare/`): raw-format readers, the synthetic generator, the one
array writer and the command line `python -m actclr_jax.data.prepare DATASET ...`.

Runtime, every run: `registry.py` (which data sets exist: layout, classes, splits, preparer),
`pipeline.py` (grain loaders over the prepared memory maps), `preprocess.py` (the cached
50-frame resize), `streams.py` (joint / motion / bone), `io.py` (errors, atomic writes, the
label reader) and `untrimmed.py` (synthetic untrimmed sequences for segmentation).
"""
