"""NTU RGB+D `.skeleton` parser, body selection, splits and folder preparation, on real files."""

from __future__ import annotations

import collections
import os
import pickle
import shutil

import numpy as np
import pytest

from actclr_jax import graph
from actclr_jax.data import io
from actclr_jax.data.prepare import ntu, ntu_skeleton, writer

# name -> (frames, bodies per frame, label); verified by parsing the files.
SAMPLES = {
    "S001C001P001R001A011": (82, 1, 10),
    "S001C003P008R002A058": (70, 2, 57),
    "S002C001P003R001A003": (100, 1, 2),
    "S003C001P015R001A034": (71, 1, 33),
    "S004C002P003R001A017": (124, 1, 16),
}

# Main bones (1-based child, parent): spine, shoulders, hips, upper arms, forearms, thighs, shins.
# Hand tips, thumbs, hands and feet are left out: Kinect tracks them poorly.
MAIN_BONES = [(1, 2), (2, 21), (3, 21), (5, 21), (9, 21), (6, 5), (10, 9), (7, 6), (11, 10),
              (13, 1), (17, 1), (14, 13), (18, 17), (15, 14), (19, 18)]


def _path(shared_data, name):
  return os.path.join(shared_data, "ntu_samples", name + ".skeleton")


def _lines(shared_data, name):
  with open(_path(shared_data, name)) as f:
    return f.read().splitlines()


def _write(path, lines):
  with open(path, "w") as f:
    f.write("\r\n".join(lines) + "\r\n")
  return str(path)


def _format_skeleton(frames):
  """Lines of a .skeleton file; frames[t] lists (tracking_id, info (9,), joints (25, 12))."""
  lines = [str(len(frames))]
  for bodies in frames:
    lines.append(str(len(bodies)))
    for tracking_id, info, joints in bodies:
      lines.append(" ".join([str(tracking_id)] + [f"{v:.8g}" for v in info]))
      lines.append(str(len(joints)))
      lines.extend(" ".join(f"{v:.8g}" for v in row) for row in joints)
  return lines


def _bodies(skeleton):
  return [[(b.tracking_id, b.info, b.joints) for b in bodies] for bodies in skeleton.frames]


# ----------------------------------------------------------------------------------------------
# Parsing real files.


def test_frame_counts_bodies_and_labels(shared_data):
  counts = []
  for name, (frames, bodies, label) in SAMPLES.items():
    skeleton = ntu_skeleton.parse_skeleton_file(_path(shared_data, name))
    counts.append(skeleton.num_frames)
    assert skeleton.num_frames == frames, name
    assert set(skeleton.body_counts) == {bodies}, name
    assert len(skeleton.tracking_ids) == bodies, name
    assert ntu.parse_sample_name(name).label == label
  assert collections.Counter(counts) == collections.Counter([82, 70, 100, 71, 124])


def test_every_field_is_read_exactly(shared_data):
  skeleton = ntu_skeleton.parse_skeleton_file(_path(shared_data, "S001C003P008R002A058"))
  first, second = skeleton.frames[0]
  # 64-bit ids above 2**53 must survive exactly (a float64 would round them).
  assert first.tracking_id == 72057594037944738
  assert second.tracking_id == 72057594037944734
  assert isinstance(first.tracking_id, int)
  np.testing.assert_array_equal(first.info, [0, 1, 1, 1, 1, 0, 0.01119184, -0.256052, 2])
  assert first.joints.shape == (25, len(ntu_skeleton.JOINT_FIELDS))
  np.testing.assert_array_equal(first.joints[0], [
      0.7201789, 0.1647426, 3.561895, 336.5812, 192.8021, 1184.537, 489.4118, -0.2218947,
      0.03421978, 0.968875, -0.1042736, 2])
  np.testing.assert_array_equal(first.xyz[3], [0.7023438, 0.8463342, 3.396255])
  np.testing.assert_array_equal(second.joints[0, :3], [-0.387201, -0.05403496, 2.961099])
  # Joint tracking states are 0 (not tracked), 1 (inferred) or 2 (tracked).
  states = np.concatenate([b.joints[:, 11] for bodies in skeleton.frames for b in bodies])
  assert set(np.unique(states)) <= {0, 1, 2}


def test_round_trip_through_writer(shared_data, tmp_path):
  skeleton = ntu_skeleton.parse_skeleton_file(_path(shared_data, "S001C003P008R002A058"))
  path = _write(tmp_path / "S001C003P008R002A058.skeleton", _format_skeleton(_bodies(skeleton)))
  again = ntu_skeleton.parse_skeleton_file(path)
  assert again.tracking_ids == skeleton.tracking_ids
  for bodies_a, bodies_b in zip(skeleton.frames, again.frames):
    for a, b in zip(bodies_a, bodies_b):
      np.testing.assert_array_equal(a.joints, b.joints)
      np.testing.assert_array_equal(a.info, b.info)


@pytest.mark.parametrize("body_selection", ["energy", "file_order"])
def test_coordinates_and_bones_are_physical(shared_data, body_selection):
  for name, (frames, bodies, _) in SAMPLES.items():
    array = ntu_skeleton.to_array(ntu_skeleton.parse_skeleton_file(_path(shared_data, name)),
                         body_selection=body_selection)
    # No sample has empty frames, so both modes keep every frame.
    assert array.shape == (frames, 2, 25, 3) and array.dtype == np.float32
    present = np.abs(array).sum(axis=(2, 3)) > 0  # (T, M)
    assert present[:, :bodies].all() and not present[:, bodies:].any(), name
    points = array[np.abs(array).sum(-1) > 0]
    assert np.abs(points[:, :2]).max() < 3 and 0.5 < points[:, 2].min() and points[:, 2].max() < 6
    for m in range(bodies):
      body = array[:, m]
      lengths = np.stack([np.linalg.norm(body[:, c - 1] - body[:, p - 1], axis=-1)
                          for c, p in MAIN_BONES], axis=1)  # (T, bones)
      relative_std = lengths.std(0) / lengths.mean(0)
      # Real data: 0.016-0.082; shuffling joints per frame gives > 0.5.
      assert np.median(relative_std) < 0.1, (name, m, relative_std)
      mean = lengths.mean(0)
      limbs = mean[5:9].tolist() + mean[11:15].tolist()  # arms, thighs, shins
      assert all(0.12 < length < 0.5 for length in limbs), (name, m, mean)
      # Left and right limbs agree.
      np.testing.assert_allclose(mean[5:9:2], mean[6:9:2], rtol=0.3)
      np.testing.assert_allclose(mean[11:15:2], mean[12:15:2], rtol=0.3)
    # Every graph bone is shorter than 0.8 m.
    edges = np.array(graph.NTU.edges)
    bone = np.linalg.norm(array[:, 0, edges[:, 0]] - array[:, 0, edges[:, 1]], axis=-1)
    assert bone.max() < 0.8


def test_two_body_sample_energy_ranks_by_motion(shared_data):
  skeleton = ntu_skeleton.parse_skeleton_file(_path(shared_data, "S001C003P008R002A058"))
  energy = ntu_skeleton.to_array(skeleton, body_selection="energy")
  order = ntu_skeleton.to_array(skeleton, body_selection="file_order")
  assert (np.abs(energy).sum(axis=(2, 3)) > 0).all()
  assert ntu_skeleton.motion_energy(energy[:, 0]) >= ntu_skeleton.motion_energy(energy[:, 1])
  # The same two people, in file order or by energy.
  assert {ntu_skeleton.motion_energy(order[:, m]) for m in range(2)} == {
      ntu_skeleton.motion_energy(energy[:, m]) for m in range(2)}


def test_energy_drops_a_ghost_that_file_order_keeps(shared_data, tmp_path):
  """A static 5-frame ghost listed first, and 3 empty frames in front."""
  skeleton = ntu_skeleton.parse_skeleton_file(_path(shared_data, "S001C001P001R001A011"))
  person = skeleton.frames[0][0]
  ghost_joints = person.joints.copy()
  ghost_joints[:, :3] = [1.5, 0.0, 4.0]
  frames = [[] for _ in range(3)] + _bodies(skeleton)
  for t in range(13, 18):
    frames[t] = [(123, person.info, ghost_joints)] + frames[t]
  path = _write(tmp_path / "S001C001P001R001A011.skeleton", _format_skeleton(frames))
  noisy = ntu_skeleton.parse_skeleton_file(path)
  assert noisy.num_frames == 85 and noisy.body_counts[13:18] == [2] * 5

  original = ntu_skeleton.to_array(skeleton, body_selection="file_order")
  order = ntu_skeleton.to_array(noisy, body_selection="file_order")
  assert order.shape == (85, 2, 25, 3)  # empty frames kept by default in file order
  assert not order[:3].any()
  np.testing.assert_array_equal(order[13:18, 0], ghost_joints[None, :, :3].repeat(5, 0))
  np.testing.assert_array_equal(order[13:18, 1], original[10:15, 0])

  energy = ntu_skeleton.to_array(noisy)  # energy; empty frames dropped by default
  np.testing.assert_array_equal(energy, original)
  kept = ntu_skeleton.to_array(noisy, drop_empty_frames=False)
  assert kept.shape == (85, 2, 25, 3) and not kept[:3].any()
  np.testing.assert_array_equal(kept[3:], original)
  dropped = ntu_skeleton.to_array(noisy, body_selection="file_order", drop_empty_frames=True)
  assert dropped.shape == (82, 2, 25, 3)


def test_energy_continues_a_redetected_person_in_the_same_slot(shared_data, tmp_path):
  skeleton = ntu_skeleton.parse_skeleton_file(_path(shared_data, "S001C001P001R001A011"))
  frames = _bodies(skeleton)
  for t in range(40, len(frames)):  # the sensor loses the person and re-detects a "new" id
    frames[t] = [(999, info, joints) for _, info, joints in frames[t]]
  path = _write(tmp_path / "S001C001P001R001A011.skeleton", _format_skeleton(frames))
  energy = ntu_skeleton.to_array(ntu_skeleton.parse_skeleton_file(path))
  np.testing.assert_array_equal(energy, ntu_skeleton.to_array(skeleton))
  assert not energy[:, 1].any()


def test_load_sample_pads_and_centre_crops(shared_data):
  path = _path(shared_data, "S001C001P001R001A011")
  array = ntu_skeleton.to_array(ntu_skeleton.parse_skeleton_file(path))  # (82, 2, 25, 3)
  padded = ntu_skeleton.load_sample(path, max_frames=300)
  assert padded.shape == (3, 300, 25, 2) and padded.dtype == np.float32
  np.testing.assert_array_equal(padded[:, :82], array.transpose(3, 0, 2, 1))
  assert not padded[:, 82:].any()
  cropped = ntu_skeleton.load_sample(path, max_frames=50)
  np.testing.assert_array_equal(cropped, array[16:66].transpose(3, 0, 2, 1))


# ----------------------------------------------------------------------------------------------
# Names, splits, missing lists.


def test_sample_names_and_splits():
  info = ntu.parse_sample_name("S001C003P008R002A058.skeleton")
  assert info == ntu.SampleInfo(setup=1, camera=3, performer=8, replication=2, action=58)
  assert info.label == 57
  assert ntu.parse_sample_name("/x/S001C001P001R001A011").label == 10
  with pytest.raises(io.DataError, match="S01C001P001R001A011"):
    ntu.parse_sample_name("S01C001P001R001A011")

  def part(name, split, variant="ntu60"):
    return ntu.split_part(ntu.parse_sample_name(name), split, variant)

  assert part("S001C001P001R001A011", "xsub") == "train"
  assert part("S002C001P003R001A003", "xsub") == "val"
  assert part("S001C001P038R001A003", "xsub") == "train"
  assert part("S001C001P045R001A003", "xsub") == "val"           # P45 trains only in NTU-120
  assert part("S001C001P045R001A003", "xsub", "ntu120") == "train"
  assert part("S001C001P103R001A003", "xsub", "ntu120") == "train"
  assert part("S001C001P044R001A003", "xsub", "ntu120") == "val"
  assert [part(f"S001C00{c}P001R001A001", "xview") for c in (1, 2, 3)] == ["val", "train", "train"]
  assert part("S032C001P001R001A001", "xset", "ntu120") == "train"
  assert part("S031C001P001R001A001", "xset", "ntu120") == "val"
  assert len(ntu.XSUB60_TRAIN_PERFORMERS) == 20 and len(ntu.XSUB120_TRAIN_PERFORMERS) == 53
  assert ntu.in_variant(ntu.parse_sample_name("S017C001P001R001A060"), "ntu60")
  assert not ntu.in_variant(ntu.parse_sample_name("S018C001P001R001A001"), "ntu60")
  assert not ntu.in_variant(ntu.parse_sample_name("S001C001P001R001A061"), "ntu60")
  assert ntu.in_variant(ntu.parse_sample_name("S018C001P001R001A120"), "ntu120")


def test_missing_lists_ship_with_the_package(shared_data):
  ntu60, ntu120 = ntu.missing_samples("ntu60"), ntu.missing_samples("ntu120")
  assert len(ntu60) == 302 and len(ntu120) == 535 and ntu60 <= ntu120
  with open(os.path.join(shared_data, "ntu_missing",
                         "NTU_RGBD60_samples_with_missing_skeletons.txt")) as f:
    assert ntu60 == {line.strip() for line in f if line.strip()}


# ----------------------------------------------------------------------------------------------
# Bad input: one DataError naming the file and the line.


def _bad(tmp_path, lines, name="S001C001P001R001A011"):
  return _write(tmp_path / f"{name}.skeleton", lines)


def _assert_error(path, line, match):
  with pytest.raises(io.DataError) as error:
    ntu_skeleton.load_sample(path)
  message = str(error.value)
  assert path in message and f"line {line}:" in message and match in message, message


def test_truncated_file(shared_data, tmp_path):
  lines = _lines(shared_data, "S001C001P001R001A011")
  # Line 1 frames, then per frame 1 + 1 + 1 + 25 lines; cut inside frame 4's joints.
  _assert_error(_bad(tmp_path, lines[:100]), 101, "unexpected end of file")
  _assert_error(_bad(tmp_path, lines[:-28]), len(lines) - 27, "body count of frame 82")
  _assert_error(_bad(tmp_path, lines[:2]), 3, "unexpected end of file")


def test_joint_count_other_than_25(shared_data, tmp_path):
  lines = _lines(shared_data, "S001C001P001R001A011")
  assert lines[3] == "25"
  lines[3] = "24"
  _assert_error(_bad(tmp_path, lines), 4, "joint count is 24")


def test_non_numeric_values(shared_data, tmp_path):
  lines = _lines(shared_data, "S001C001P001R001A011")
  joint = lines[9].split()
  joint[4] = "abc"
  lines[9] = " ".join(joint)
  _assert_error(_bad(tmp_path, lines), 10, "non-numeric value for joint 6")
  lines = _lines(shared_data, "S001C001P001R001A011")
  lines[1] = "one"
  _assert_error(_bad(tmp_path, lines), 2, "body count")
  lines = _lines(shared_data, "S001C001P001R001A011")
  lines[2] = lines[2].replace("72057594037931648", "7.2e16")
  _assert_error(_bad(tmp_path, lines), 3, "non-numeric body values")
  lines = _lines(shared_data, "S001C001P001R001A011")
  lines[40] = lines[40] + " 7"
  _assert_error(_bad(tmp_path, lines), 41, "expected 12 values")


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_nan_or_inf_coordinates(shared_data, tmp_path, value):
  lines = _lines(shared_data, "S001C001P001R001A011")
  joint = lines[33].split()  # frame 2, body 1, joint 2
  joint[2] = value
  lines[33] = " ".join(joint)
  _assert_error(_bad(tmp_path, lines), 34, "NaN or inf coordinate for joint 2 of body 1 of frame 2")


def test_empty_file_and_trailing_content(shared_data, tmp_path):
  _assert_error(_bad(tmp_path, [""]), 1, "empty file")
  lines = _lines(shared_data, "S001C001P001R001A011") + ["", "1"]
  _assert_error(_bad(tmp_path, lines), len(lines), "after the 82 declared frames")


def test_file_without_bodies(tmp_path):
  path = _bad(tmp_path, ["3", "0", "0", "0"])
  assert ntu_skeleton.parse_skeleton_file(path).body_counts == [0, 0, 0]
  for body_selection in ntu_skeleton.BODY_SELECTIONS:
    with pytest.raises(io.DataError, match="no body in any of the 3 frames"):
      ntu_skeleton.to_array(ntu_skeleton.parse_skeleton_file(path), body_selection=body_selection)


# ----------------------------------------------------------------------------------------------
# Folder preparation.


def _raw_folder(shared_data, tmp_path, bad=True):
  raw = tmp_path / "raw" / "nested"
  raw.mkdir(parents=True)
  for name in ("S001C001P001R001A011", "S002C001P003R001A003"):
    shutil.copy(_path(shared_data, name), raw / f"{name}.skeleton")
  lines = _lines(shared_data, "S001C003P008R002A058")
  # A sample on the missing list, and one of NTU-120 only: both skipped for ntu60.
  _write(raw / "S001C002P005R002A008.skeleton", lines)
  _write(raw / "S018C001P001R001A001.skeleton", lines)
  if bad:
    _write(raw / "S001C002P004R001A005.skeleton", lines[:500])
  return str(tmp_path / "raw")


def test_prepare_fails_on_a_bad_file_and_writes_nothing(shared_data, tmp_path):
  raw = _raw_folder(shared_data, tmp_path)
  out = tmp_path / "out"
  with pytest.raises(io.DataError) as error:
    ntu.prepare(raw, str(out), num_workers=1)
  message = str(error.value)
  assert "1 bad NTU skeleton file" in message
  assert "S001C002P004R001A005.skeleton: line 501: unexpected end of file" in message
  assert not out.exists()


def test_prepare_skip_bad_writes_the_good_ones(shared_data, tmp_path):
  raw = _raw_folder(shared_data, tmp_path)
  out = str(tmp_path / "out")
  summary = ntu.prepare(raw, out, skip_bad=True, num_workers=1, max_frames=120)
  assert summary["layout"] == "ntu" and summary["body_selection"] == "energy"
  assert [os.path.basename(f) for f, _ in summary["bad"]] == ["S001C002P004R001A005.skeleton"]
  assert summary["skipped_missing"] == ["S001C002P005R002A008"]
  assert summary["skipped_other_variant"] == 1
  # P001 trains and P003 is held out under xsub; both are camera 1 (val) under xview.
  assert summary["splits"] == {"xsub": {"train": 1, "val": 1}, "xview": {"train": 0, "val": 2}}
  names, labels = io.load_labels(os.path.join(out, "xview", "val_label.pkl"))
  assert names == ["S001C001P001R001A011", "S002C001P003R001A003"]
  assert labels.tolist() == [10, 2]
  data = np.load(os.path.join(out, "xview", "val_data.npy"))
  assert data.shape == (2, 3, 120, 25, 2) and data.dtype == np.float32
  for row, name in enumerate(names):
    np.testing.assert_array_equal(data[row], ntu_skeleton.load_sample(_path(shared_data, name),
                                                             max_frames=120))
  assert np.load(os.path.join(out, "xview", "train_data.npy")).shape == (0, 3, 120, 25, 2)
  np.testing.assert_array_equal(np.load(os.path.join(out, "xsub", "train_data.npy"))[0], data[0])
  leftovers = [f for _, _, files in os.walk(out) for f in files if f.startswith(".tmp")]
  assert not leftovers


def test_prepare_ntu120_splits(shared_data, tmp_path):
  raw = _raw_folder(shared_data, tmp_path, bad=False)
  summary = ntu.prepare(raw, str(tmp_path / "out"), variant="ntu120", num_workers=1,
                        body_selection="file_order", max_frames=32)
  assert summary["body_selection"] == "file_order" and not summary["drop_empty_frames"]
  assert set(summary["splits"]) == {"xsub", "xset"}
  # S018 is new in NTU-120; S001C002P005R002A008 is on both missing lists.
  assert summary["skipped_missing"] == ["S001C002P005R002A008"]
  assert summary["splits"]["xset"] == {"train": 2, "val": 1}  # S002, S018 even; S001 odd
  names, labels = io.load_labels(str(tmp_path / "out" / "xset" / "train_label.pkl"))
  assert names == ["S002C001P003R001A003", "S018C001P001R001A001"] and labels.tolist() == [2, 0]
  data = np.load(str(tmp_path / "out" / "xset" / "train_data.npy"))
  assert data.shape == (2, 3, 32, 25, 2)
  assert data[1, :, :, :, 1].any()  # the two-body recording keeps its second body


# ----------------------------------------------------------------------------------------------
# The split files themselves.


def test_write_split_rejects_bad_arrays_and_labels(tmp_path):
  with pytest.raises(io.DataError, match="expected \\(N, C, T, V, M\\)"):
    writer.write_split(str(tmp_path), "train", np.zeros((2, 3, 4, 25), np.float32), ["a", "b"],
                       [0, 1], (3, 4, 25))
  with pytest.raises(io.DataError, match="2 names, 1 labels"):
    writer.write_split(str(tmp_path), "train", np.zeros((2, 3, 4, 25, 2), np.float32),
                       ["a", "b"], [0], (3, 4, 25, 2))
  with pytest.raises(io.DataError, match="1 samples for 2 names and labels"):
    writer.write_split(str(tmp_path), "train", np.zeros((1, 3, 4, 25, 2), np.float32),
                       ["a", "b"], [0, 1], (3, 4, 25, 2))
  with pytest.raises(io.DataError, match=r"row 1 has shape \(3, 4, 20, 2\)"):
    writer.write_split(str(tmp_path), "train",
                       [np.zeros((3, 4, 25, 2)), np.zeros((3, 4, 20, 2))], ["a", "b"], [0, 1],
                       (3, 4, 25, 2))
  assert not os.listdir(tmp_path)
  path = tmp_path / "val_label.pkl"
  with open(path, "wb") as f:
    pickle.dump((["a", "b", "c"], [0, 1]), f)
  with pytest.raises(io.DataError, match="3 sample names but 2 labels"):
    io.load_labels(str(path))
