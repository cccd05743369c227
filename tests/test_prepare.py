"""The `prepare` command line, run on the real NTU samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from actclr_jax.data import io
from actclr_jax.data import ntu
from actclr_jax.data import prepare

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

# Under the NTU-60 rules: xsub trains performers 1, 8, 15 (not 3); xview trains cameras 2, 3.
EXPECTED = {
    "xsub": {"train": ["S001C001P001R001A011", "S001C003P008R002A058", "S003C001P015R001A034"],
             "val": ["S002C001P003R001A003", "S004C002P003R001A017"]},
    "xview": {"train": ["S001C003P008R002A058", "S004C002P003R001A017"],
              "val": ["S001C001P001R001A011", "S002C001P003R001A003", "S003C001P015R001A034"]},
}


def _files(directory):
  return sorted(os.path.relpath(os.path.join(root, f), directory)
                for root, _, files in os.walk(directory) for f in files)


def test_prepare_ntu60_writes_splits_and_caches(shared_data, tmp_path, capsys):
  raw = os.path.join(shared_data, "ntu_samples")
  out = str(tmp_path / "ntu60")
  assert prepare.main(["ntu60", f"--raw_dir={raw}", f"--out_dir={out}", "--num_workers=1"]) == 0
  printed = capsys.readouterr().out
  assert "xsub: train 3, val 2" in printed and "xview: train 2, val 3" in printed

  for split, parts in EXPECTED.items():
    for part, expected_names in parts.items():
      names, labels = io.load_labels(os.path.join(out, split, f"{part}_label.pkl"))
      assert names == expected_names
      assert labels.tolist() == [int(name[-3:]) - 1 for name in names]
      data = np.load(os.path.join(out, split, f"{part}_data.npy"))
      assert data.shape == (len(names), 3, 300, 25, 2) and data.dtype == np.float32
      for row, name in enumerate(names):
        path = os.path.join(raw, name + ".skeleton")
        np.testing.assert_array_equal(data[row], ntu.load_sample(path))
        frames = ntu.parse_skeleton_file(path).num_frames
        assert data[row, :, frames - 1, :, 0].any() and not data[row, :, frames:].any()
      cache = np.load(os.path.join(out, split, f"{part}_data_t50.npy"))
      assert cache.shape == (len(names), 3, 50, 25, 2)
      # The cache is centred on joint 21 (spine at shoulders, index 20).
      np.testing.assert_allclose(cache[:, :, :, 20, 0], 0, atol=1e-6)

  with open(os.path.join(out, "prepare_summary.json")) as f:
    summary = json.load(f)
  assert summary["dataset"] == "ntu60" and summary["body_selection"] == "energy"
  assert summary["bad"] == [] and summary["layout"] == "ntu"
  assert not [f for f in _files(out) if ".tmp" in f]
  assert sorted(_files(out)) == sorted(
      ["prepare_summary.json"] + [f"{s}/{p}_{kind}" for s in EXPECTED for p in ("train", "val")
                                  for kind in ("data.npy", "label.pkl", "data_t50.npy")])


def test_cli_module_entry_point_file_order(shared_data, tmp_path):
  raw = os.path.join(shared_data, "ntu_samples")
  out = str(tmp_path / "ntu60")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run(
      [sys.executable, "-m", "actclr_jax.data.prepare", "ntu60", f"--raw_dir={raw}",
       f"--out_dir={out}", "--body_selection=file_order", "--max_frames=64", "--num_workers=2",
       "--no_preprocess"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(out, "prepare_summary.json")) as f:
    assert json.load(f)["body_selection"] == "file_order"
  data = np.load(os.path.join(out, "xview", "train_data.npy"))
  assert data.shape == (2, 3, 64, 25, 2)
  np.testing.assert_array_equal(
      data[0], ntu.load_sample(os.path.join(raw, "S001C003P008R002A058.skeleton"),
                               body_selection="file_order", max_frames=64))
  assert not [f for f in _files(out) if f.endswith("_t50.npy") or ".tmp" in f]


def test_cli_reports_bad_files_and_exits_nonzero(shared_data, tmp_path, capsys):
  raw = tmp_path / "raw"
  raw.mkdir()
  with open(os.path.join(shared_data, "ntu_samples", "S001C001P001R001A011.skeleton")) as f:
    lines = f.read().splitlines()
  (raw / "S001C001P001R001A011.skeleton").write_text("\n".join(lines))
  lines[3] = "20"
  (raw / "S001C001P002R001A011.skeleton").write_text("\n".join(lines))
  out = tmp_path / "out"
  args = ["ntu60", f"--raw_dir={raw}", f"--out_dir={out}", "--num_workers=1", "--no_preprocess"]
  assert prepare.main(args) == 1
  error = capsys.readouterr().err
  assert "S001C001P002R001A011.skeleton: line 4: joint count is 20" in error
  assert "Traceback" not in error
  assert not out.exists()

  assert prepare.main(args + ["--skip_bad"]) == 0
  printed = capsys.readouterr().out
  assert "bad files skipped: 1" in printed and "line 4: joint count is 20" in printed
  assert io.load_labels(str(out / "xsub" / "train_label.pkl"))[0] == ["S001C001P001R001A011"]


def test_cli_rejects_options_that_do_not_apply(tmp_path):
  for argv in (["ntu60", f"--out_dir={tmp_path}", "--raw_dir=x", "--seed=1"],
               ["ntu60", f"--out_dir={tmp_path}"],
               ["msr", f"--out_dir={tmp_path}", "--raw_dir=x", "--body_selection=energy"],
               ["synthetic", f"--out_dir={tmp_path}", "--raw_dir=x"],
               ["kinetics", f"--out_dir={tmp_path}"]):
    with pytest.raises(SystemExit) as exit_:
      prepare.main(argv)
    assert exit_.value.code == 2
  assert set(prepare.DATASETS) == {"ntu60", "ntu120", "pku_mmd1", "pku_mmd2", "nwucla", "msr",
                                   "synthetic"}


def test_missing_raw_dir_is_a_data_error(tmp_path, capsys):
  assert prepare.main(["ntu60", f"--raw_dir={tmp_path}/absent", f"--out_dir={tmp_path}/o"]) == 1
  assert f"{tmp_path}/absent: no such directory" in capsys.readouterr().err
