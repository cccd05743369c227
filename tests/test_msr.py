"""MSR Action3D parser and preparation, on the real files in ../shared/data/msr_action3d."""

from __future__ import annotations

import os

import numpy as np
import pytest

from actclr_jax.data import io
from actclr_jax.data.prepare import msr


@pytest.fixture
def msr_dir(shared_data) -> str:
  path = os.path.join(shared_data, "msr_action3d")
  if not os.path.isdir(path):
    pytest.skip(f"{path} is absent")
  return path


def test_parse_name():
  assert msr.parse_name("a13_s09_e02") == (13, 9, 2)
  assert msr.parse_name("/x/a01_s10_e03_skeleton3D.txt") == (1, 10, 3)
  for bad in ("a21_s01_e01", "a01_s11_e01", "a1_s01_e01", "b01_s01_e01"):
    with pytest.raises(io.DataError, match=bad):
      msr.parse_name(bad)


def test_real_files(msr_dir):
  names = msr.list_sequences(msr_dir)
  assert len(names) == 567
  standard = msr.read_standard_list(msr_dir)
  assert len(standard) == 557 and set(standard) <= set(names)
  assert "a13_s09_e02" not in standard

  lengths, zero, untracked = [], [], 0
  lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
  for name in names:
    seq = msr.read_sequence(os.path.join(msr_dir, name + msr.FILE_SUFFIX))
    assert seq.dtype == np.float32 and seq.shape[1:] == (20, 3)
    lengths.append(len(seq))
    if not seq.any():
      zero.append(name)
      continue
    untracked += int((~seq.any(axis=(1, 2))).any())
    tracked = seq[np.any(seq != 0, axis=-1)]
    lo, hi = np.minimum(lo, tracked.min(0)), np.maximum(hi, tracked.max(0))
  assert zero == ["a13_s09_e02"]
  assert untracked == 19  # sequences with some all-zero (untracked) frames, kept as they are
  assert (min(lengths), max(lengths), int(np.median(lengths))) == (13, 936, 39)
  # Metres: a standing person 1.4-3.9 m from the sensor, about 3 m tall range in y at most.
  assert 1.0 < lo[2] and hi[2] < 4.5
  assert -2.5 < lo[1] and hi[1] < 2.0 and -1.5 < lo[0] and hi[0] < 1.5

  # The first joint of the first frame of a01_s01_e01, as in the file.
  first = msr.read_sequence(os.path.join(msr_dir, "a01_s01_e01" + msr.FILE_SUFFIX))
  np.testing.assert_allclose(first[0, 0], [-0.371736, 0.371031, 2.674849], rtol=1e-6)


def test_prepare_real(msr_dir, tmp_path):
  max_frames = 16
  summary = msr.prepare(msr_dir, str(tmp_path), max_frames=max_frames)
  counts = summary["splits"]["xsub"]
  print("MSR Action3D xsub split sizes:", counts)
  assert summary["layout"] == "msr" and summary["bad"] == []
  assert counts["train"] + counts["val"] == 557
  assert counts == {"train": 284, "val": 273}
  assert "a13_s09_e02" in summary["excluded"] and len(summary["excluded"]) == 10
  # The 936-frame a13_s09_e03 is one of the ten left out; the standard list spans 13..76.
  assert summary["num_frames"] == (13, 76)

  for part in ("train", "val"):
    data = np.load(tmp_path / "xsub" / f"{part}_data.npy")
    names, labels = io.load_labels(str(tmp_path / "xsub" / f"{part}_label.pkl"))
    assert data.dtype == np.float32 and data.shape == (counts[part], 3, max_frames, 20, 1)
    assert len(names) == counts[part]
    subjects = {msr.parse_name(n)[1] for n in names}
    assert subjects == ({1, 3, 5, 7, 9} if part == "train" else {2, 4, 6, 8, 10})
    np.testing.assert_array_equal(labels, [msr.parse_name(n)[0] - 1 for n in names])
    assert labels.min() == 0 and labels.max() == 19

  # A sample shorter than max_frames is zero-padded at the end, with (x, y, z) on axis 1.
  data = np.load(tmp_path / "xsub" / "train_data.npy")
  names, _ = io.load_labels(str(tmp_path / "xsub" / "train_label.pkl"))
  seq = msr.read_sequence(os.path.join(msr_dir, names[0] + msr.FILE_SUFFIX))
  expected = io.pad_or_crop_frames(seq, max_frames).transpose(2, 0, 1)
  np.testing.assert_array_equal(data[0, ..., 0], expected)


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines))


def _fake_folder(tmp_path, frames=3):
  raw = tmp_path / "raw"
  raw.mkdir()
  rng = np.random.default_rng(0)
  names = ["a01_s01_e01", "a02_s02_e01", "a03_s03_e02"]
  for name in names:
    values = rng.uniform(0.5, 2.5, size=(frames * 20, 4))
    _write(raw / (name + msr.FILE_SUFFIX), [" ".join(f"{v:.6f}" for v in row) for row in values])
  _write(raw / msr.STANDARD_LIST, names)
  return raw, names


def test_errors_name_file_and_line(tmp_path):
  raw, names = _fake_folder(tmp_path)
  path = raw / (names[1] + msr.FILE_SUFFIX)
  lines = path.read_text().splitlines()

  _write(path, lines[:-1])  # 59 lines: not a multiple of 20
  with pytest.raises(io.DataError, match=r"a02_s02_e01_skeleton3D.txt: line 59"):
    msr.read_sequence(str(path))
  _write(path, lines[:7] + ["0.1 0.2 0.3"] + lines[8:])
  with pytest.raises(io.DataError, match=r"line 8: expected 4 values, got 3"):
    msr.read_sequence(str(path))
  _write(path, lines[:4] + ["0.1 abc 0.3 1"] + lines[5:])
  with pytest.raises(io.DataError, match=r"line 5: non-numeric"):
    msr.read_sequence(str(path))
  _write(path, lines[:10] + ["0.1 nan 0.3 1"] + lines[11:])
  with pytest.raises(io.DataError, match=r"line 11: NaN or inf"):
    msr.read_sequence(str(path))
  _write(path, [])
  with pytest.raises(io.DataError, match="empty file"):
    msr.read_sequence(str(path))


def test_prepare_bad_files_all_listed_or_skipped(tmp_path):
  raw, names = _fake_folder(tmp_path)
  _write(raw / (names[0] + msr.FILE_SUFFIX), ["0 0 0 0"] * 40)  # all zeros, but listed
  _write(raw / (names[2] + msr.FILE_SUFFIX), ["1 2 3 4"] * 21)  # 21 lines
  out = tmp_path / "out"
  with pytest.raises(io.DataError) as info:
    msr.prepare(str(raw), str(out))
  message = str(info.value)
  assert "2 bad" in message and "a01_s01_e01" in message and "all zeros" in message
  assert "a03_s03_e02_skeleton3D.txt: line 21" in message
  assert not out.exists()

  summary = msr.prepare(str(raw), str(out), skip_bad=True, max_frames=5)
  assert len(summary["bad"]) == 2
  assert summary["splits"]["xsub"] == {"train": 0, "val": 1}
  assert np.load(out / "xsub" / "val_data.npy").shape == (1, 3, 5, 20, 1)
  assert np.load(out / "xsub" / "train_data.npy").shape == (0, 3, 5, 20, 1)
  assert io.load_labels(str(out / "xsub" / "val_label.pkl"))[1].tolist() == [1]


def test_missing_listed_file(tmp_path):
  raw, names = _fake_folder(tmp_path)
  os.remove(raw / (names[1] + msr.FILE_SUFFIX))
  with pytest.raises(io.DataError, match="a02_s02_e01_skeleton3D.txt: listed .* missing"):
    msr.prepare(str(raw), str(tmp_path / "out"))
