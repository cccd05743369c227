"""NW-UCLA JSON parser and preparation, on JSON files generated in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actclr_jax.data import io
from actclr_jax.data.prepare import nwucla

# (action code, subject, episode, view, frames)
SEQUENCES = [
    (1, 1, 0, 1, 12), (1, 1, 0, 2, 12), (1, 1, 0, 3, 12),
    (12, 2, 1, 1, 40), (12, 2, 1, 3, 40),
    (8, 3, 2, 2, 5), (11, 4, 0, 3, 20),
]


def _name(action, subject, episode, view):
  return f"a{action:02d}_s{subject:02d}_e{episode:02d}_v{view:02d}"


def _skeletons(frames, seed):
  rng = np.random.default_rng(seed)
  return rng.uniform(-1.0, 3.0, size=(frames, 20, 3)).round(6)


def _write(path, content):
  path.write_text(json.dumps(content))


@pytest.fixture
def raw(tmp_path):
  folder = tmp_path / "raw" / "all_sqe"
  folder.mkdir(parents=True)
  for i, (a, s, e, v, t) in enumerate(SEQUENCES):
    name = _name(a, s, e, v)
    _write(folder / f"{name}.json", {"file_name": name, "skeletons": _skeletons(t, i).tolist(),
                                     "label": nwucla.action_label(a)})
  return folder


def test_names_and_labels():
  assert nwucla.parse_name("/x/a12_s10_e04_v03.json") == (12, 10, 4, 3)
  assert [nwucla.action_label(a) for a in nwucla.ACTION_CODES] == list(range(1, 11))
  with pytest.raises(io.DataError, match="a07"):
    nwucla.parse_name("a07_s01_e00_v01")
  with pytest.raises(io.DataError, match="view 4"):
    nwucla.parse_name("a01_s01_e00_v04")


def test_read_sample(raw):
  skeletons, label = nwucla.read_sample(str(raw / "a12_s02_e01_v01.json"))
  assert skeletons.dtype == np.float32 and skeletons.shape == (40, 20, 3)
  np.testing.assert_allclose(skeletons, _skeletons(40, 3), rtol=1e-6)
  assert label == 9


def test_prepare(raw, tmp_path):
  out = tmp_path / "out"
  summary = nwucla.prepare(str(tmp_path / "raw"), str(out), max_frames=16)
  assert summary["layout"] == "kinect_v1" and summary["bad"] == []
  assert summary["splits"] == {"xview": {"train": 4, "val": 3}}
  assert summary["num_frames"] == (5, 40)

  expected = {_name(a, s, e, v): (i, t, nwucla.action_label(a) - 1)
              for i, (a, s, e, v, t) in enumerate(SEQUENCES)}
  for part, views in (("train", {1, 2}), ("val", {3})):
    data = np.load(out / "xview" / f"{part}_data.npy")
    names, labels = io.load_labels(str(out / "xview" / f"{part}_label.pkl"))
    assert data.dtype == np.float32 and data.shape == (len(names), 3, 16, 20, 1)
    assert {nwucla.parse_name(n)[3] for n in names} == views
    for k, name in enumerate(names):
      seed, frames, label = expected[name]
      assert labels[k] == label
      np.testing.assert_allclose(
          data[k, ..., 0], io.pad_or_crop_frames(_skeletons(frames, seed), 16).transpose(2, 0, 1),
          rtol=1e-6)
      if frames < 16:
        assert not data[k, :, frames:].any()  # zero-padded at the end
  _, train_labels = io.load_labels(str(out / "xview" / "train_label.pkl"))
  assert sorted(train_labels.tolist()) == [0, 0, 6, 9]  # a01 x2, a08 -> 7, a12 -> 10


def _good(frames=3):
  return {"file_name": "a01_s01_e00_v01", "skeletons": _skeletons(frames, 0).tolist(), "label": 1}


def _bad_cases():
  wrong_joints = _good()
  wrong_joints["skeletons"][1] = wrong_joints["skeletons"][1][:19]
  wrong_coords = _good()
  wrong_coords["skeletons"][2][5] = [0.1, 0.2]
  non_numeric = _good()
  non_numeric["skeletons"][0][3][1] = "x"
  boolean = _good()
  boolean["skeletons"][1][0][0] = True
  nan = _good()
  nan["skeletons"][2][7][2] = float("nan")
  no_skeletons = _good()
  del no_skeletons["skeletons"]
  wrong_label = _good()
  wrong_label["label"] = 2
  empty_frames = _good()
  empty_frames["skeletons"] = []
  return {
      "wrong_joints": (json.dumps(wrong_joints), r"frame 1: expected 20 joints, got 19"),
      "wrong_coords": (json.dumps(wrong_coords), r"frame 2, joint 5: expected 3 coordinates"),
      "non_numeric": (json.dumps(non_numeric), r"frame 0, joint 3: non-numeric"),
      "boolean": (json.dumps(boolean), r"frame 1, joint 0: non-numeric"),
      "nan": (json.dumps(nan), r"NaN or inf coordinate at frame 2"),
      "no_skeletons": (json.dumps(no_skeletons), r"no 'skeletons'"),
      "wrong_label": (json.dumps(wrong_label), r"JSON label 2 disagrees with action code a01"),
      "empty_frames": (json.dumps(empty_frames), r"non-empty list"),
      "empty_file": ("", r"empty file"),
      "invalid_json": ('{"skeletons": [[\n[1, 2,', r"line 2, column \d+: invalid JSON"),
      "not_object": ("[1, 2]", r"expected a JSON object"),
  }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_read_errors(tmp_path, case):
  text, pattern = _bad_cases()[case]
  path = tmp_path / "a01_s01_e00_v01.json"
  path.write_text(text)
  with pytest.raises(io.DataError, match=pattern) as info:
    nwucla.read_sample(str(path))
  assert "a01_s01_e00_v01.json" in str(info.value)


def test_prepare_bad_files(raw, tmp_path):
  (raw / "a01_s01_e00_v02.json").write_text("")
  (raw / "a99_s01_e00_v01.json").write_text("{}")
  out = tmp_path / "out"
  with pytest.raises(io.DataError) as info:
    nwucla.prepare(str(tmp_path / "raw"), str(out))
  message = str(info.value)
  assert "2 bad" in message and "a01_s01_e00_v02.json: empty file" in message
  assert "a99_s01_e00_v01.json" in message
  assert not out.exists()

  summary = nwucla.prepare(str(tmp_path / "raw"), str(out), skip_bad=True, max_frames=8)
  assert len(summary["bad"]) == 2
  assert summary["splits"]["xview"] == {"train": 3, "val": 3}
  assert np.load(out / "xview" / "train_data.npy").shape == (3, 3, 8, 20, 1)
