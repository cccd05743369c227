"""The `prepare` command line (on the real NTU samples), the array writer and the registry."""

from __future__ import annotations

import importlib
import io as io_module
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from actclr_jax import graph
from actclr_jax.data import io, registry
from actclr_jax.data.prepare import cli, ntu_skeleton, writer

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
  assert cli.main(["ntu60", f"--raw_dir={raw}", f"--out_dir={out}", "--num_workers=1"]) == 0
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
        np.testing.assert_array_equal(data[row], ntu_skeleton.load_sample(path))
        frames = ntu_skeleton.parse_skeleton_file(path).num_frames
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
      data[0], ntu_skeleton.load_sample(os.path.join(raw, "S001C003P008R002A058.skeleton"),
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
  assert cli.main(args) == 1
  error = capsys.readouterr().err
  assert "S001C001P002R001A011.skeleton: line 4: joint count is 20" in error
  assert "Traceback" not in error
  assert not out.exists()

  assert cli.main(args + ["--skip_bad"]) == 0
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
      cli.main(argv)
    assert exit_.value.code == 2
  assert set(registry.DATASETS) == {"ntu60", "ntu120", "pku_mmd1", "pku_mmd2", "nwucla", "msr",
                                    "synthetic"}


def test_missing_raw_dir_is_a_data_error(tmp_path, capsys):
  assert cli.main(["ntu60", f"--raw_dir={tmp_path}/absent", f"--out_dir={tmp_path}/o"]) == 1
  assert f"{tmp_path}/absent: no such directory" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# The array writer.


def _npy_bytes(array):
  buffer = io_module.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


def test_writer_round_trips_values_as_np_save_would(tmp_path):
  rows = np.random.default_rng(0).normal(size=(5, 3, 7, 25, 2)).astype(np.float64)
  path = tmp_path / "out" / "train_data.npy"
  with writer.ArrayWriter(str(path), (3, 7, 25, 2), capacity=5) as out:
    out.append(rows[0])
    out.extend(rows[1:])
  np.testing.assert_array_equal(np.load(path), rows.astype(np.float32))
  assert path.read_bytes() == _npy_bytes(rows.astype(np.float32))
  assert os.listdir(path.parent) == ["train_data.npy"]


def test_writer_with_fewer_rows_than_capacity_matches_np_save(tmp_path):
  rows = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
  path = tmp_path / "a.npy"
  with writer.ArrayWriter(str(path), (6,), capacity=10) as out:
    out.extend(rows)
  assert path.read_bytes() == _npy_bytes(rows)
  # No rows at all.
  with writer.ArrayWriter(str(path), (3, 4, 25, 2), capacity=3):
    pass
  assert np.load(path).shape == (0, 3, 4, 25, 2)
  assert sorted(os.listdir(tmp_path)) == ["a.npy"]


def test_writer_failing_midway_leaves_nothing_under_the_final_name(tmp_path):
  path = tmp_path / "train_data.npy"
  with pytest.raises(RuntimeError, match="parser failed"):
    with writer.ArrayWriter(str(path), (3, 4, 25, 2), capacity=4) as out:
      out.append(np.ones((3, 4, 25, 2)))
      raise RuntimeError("parser failed")
  assert not os.listdir(tmp_path)
  # An earlier complete file is left as it was.
  np.save(path, np.zeros((1, 3, 4, 25, 2), np.float32))
  before = path.read_bytes()
  with pytest.raises(io.DataError, match=r"train_data.npy: more than the 1 rows"):
    with writer.ArrayWriter(str(path), (3, 4, 25, 2), capacity=1) as out:
      out.extend(np.ones((2, 3, 4, 25, 2)))
  with pytest.raises(io.DataError, match=r"train_data.npy: row 0 has shape \(3, 4, 20, 2\)"):
    with writer.ArrayWriter(str(path), (3, 4, 25, 2), capacity=1) as out:
      out.append(np.ones((3, 4, 20, 2)))
  assert path.read_bytes() == before and os.listdir(tmp_path) == ["train_data.npy"]


def test_write_split_writes_all_files_or_none(tmp_path):
  data = np.random.default_rng(1).normal(size=(3, 3, 5, 20, 1)).astype(np.float32)
  mask = np.ones((3, 5, 20), bool)

  def samples(fail_at=None):
    for i, sample in enumerate(data):
      if i == fail_at:
        raise io.DataError("bad sample 2")
      yield sample

  split = tmp_path / "xsub"
  with pytest.raises(io.DataError, match="bad sample 2"):
    writer.write_split(str(split), "train", samples(fail_at=2), ["a", "b", "c"], [0, 1, 2],
                       (3, 5, 20, 1), extras={"actionlet": (mask, np.uint8)})
  assert not os.listdir(split)
  assert writer.write_split(str(split), "train", samples(), ["a", "b", "c"], [0, 1, 2],
                            (3, 5, 20, 1), extras={"actionlet": (mask, np.uint8)}) == 3
  assert sorted(os.listdir(split)) == ["train_actionlet.npy", "train_data.npy", "train_label.pkl"]
  np.testing.assert_array_equal(np.load(split / "train_data.npy"), data)
  assert np.load(split / "train_actionlet.npy").dtype == np.uint8
  names, labels = io.load_labels(str(split / "train_label.pkl"))
  assert names == ["a", "b", "c"] and labels.tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------------------------
# The data-set registry and the configs that read it.

# config file -> the registered data set it selects.
CONFIGS = {"ntu60": "ntu60", "ntu120": "ntu120", "pku_mmd": "pku_mmd1", "nwucla": "nwucla",
           "msr": "msr", "synthetic": "synthetic"}


@pytest.mark.parametrize("name", sorted(registry.DATASETS))
def test_registered_data_set_is_consistent(name):
  dataset = registry.get(name)
  assert dataset.name == name
  layout = graph.get_layout(dataset.layout)
  assert layout.num_joints in (20, 25) and dataset.max_bodies in (1, 2)
  assert dataset.num_classes == len(dataset.class_names) == len(set(dataset.class_names))
  assert all(isinstance(c, str) and c for c in dataset.class_names)
  assert dataset.splits and dataset.default_split in dataset.splits
  assert len(set(dataset.splits)) == len(dataset.splits)
  assert dataset.root == f"data/{name}"
  assert callable(dataset.prepare_function())
  options = cli.accepted_options(dataset)
  # A generated set takes no raw folder; every other preparer does, and can skip bad files.
  assert ("raw_dir" in options) == (not dataset.generated)
  assert ("skip_bad" in options) == (not dataset.generated)


def test_registry_agrees_with_the_preparers():
  # pylint: disable-next=g-import-not-at-top
  from actclr_jax.data.prepare import msr, ntu, nwucla, pku_mmd, synthetic
  assert registry.get("ntu60").class_names == registry.get("ntu120").class_names[:60]
  assert registry.get("ntu60").num_classes == ntu.NTU60_MAX_ACTION
  assert len(nwucla.ACTION_CODES) == registry.get("nwucla").num_classes
  assert msr.NUM_ACTIONS == 20 and pku_mmd.NUM_CLASSES == 51
  assert registry.get("pku_mmd1").class_names == registry.get("pku_mmd2").class_names
  assert len(synthetic.CLASS_JOINTS) == synthetic.NUM_CLASSES == 12
  assert synthetic.SPLITS == registry.get("synthetic").splits
  for name in ("msr", "nwucla"):
    assert graph.get_layout(registry.get(name).layout).num_joints == 20
  with pytest.raises(ValueError, match="config key data.dataset"):
    registry.get("kinetics")


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_config_data_fields_come_from_the_registry(config_name):
  module = importlib.import_module(f"configs.{config_name}")
  dataset = registry.get(CONFIGS[config_name])
  for argument in [None] + [f"{split},{stream}" for split in dataset.splits
                            for stream in ("joint", "motion", "bone")]:
    data = module.get_config(argument).data
    split, stream = (argument or f"{dataset.default_split},joint").split(",")
    assert (data.dataset, data.root, data.split, data.stream, data.layout, data.num_classes) == (
        dataset.name, dataset.root, split, stream, dataset.layout, dataset.num_classes)
  with pytest.raises(ValueError, match=r"Unknown config argument\(s\) \['xyz'\]"):
    module.get_config("xyz,joint")


def test_default_config_data_block_is_ntu60():
  from configs import default  # pylint: disable=g-import-not-at-top
  data = default.get_config().data
  assert (data.dataset, data.root, data.split, data.stream, data.layout, data.num_classes) == (
      "ntu60", "data/ntu60", "xview", "joint", "ntu", 60)
