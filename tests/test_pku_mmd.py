"""PKU-MMD parsers and preparation, on a tiny fake PKU-MMD tree generated in tmp_path."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from actclr_jax.data import io
from actclr_jax.data.prepare import pku_mmd

# video -> (frames, two bodies?, label rows (class, start, end, confidence))
VIDEOS = {
    "0002-L": (30, False, [(1, 1, 10, 1), (5, 14, 30, 2)]),
    "0002-M": (50, True, [(51, 5, 44, 1)]),
    "0003-L": (80, False, [(12, 3, 8, 1), (12, 20, 79, 2), (2, 80, 80, 1)]),
    "0003-R": (40, True, [(7, 11, 25, 1)]),
}
XSUB = (["0002-L", "0002-M"], ["0003-L", "0003-R"])
XVIEW = (["0002-M", "0003-R"], ["0002-L", "0003-L"])


def _frames(video: str, frames: int, two: bool) -> np.ndarray:
  """(T, 150) plausible coordinates: a body ~3 m away, swaying; body 2 zero when absent."""
  rng = np.random.default_rng(int(video[:4]) * 10 + ord(video[-1]))
  t = np.arange(frames)[:, None, None]
  body = rng.uniform([-0.5, -0.8, 2.5], [0.5, 0.8, 3.2], size=(1, 25, 3))
  bodies = [body + 0.05 * np.sin(t / 5.0), (body + [0.8, 0.0, 0.2]) * two + 0 * t]
  return np.stack(bodies, 1).reshape(frames, 150).round(6)


def _write_split(path, train, val, header="Validataion videos:"):
  path.write_text(f"Training videos: \n{', '.join(train)}, \n{header} \n{', '.join(val)}\n")


@pytest.fixture
def raw(tmp_path):
  root = tmp_path / "raw"
  for folder in ("skeleton", "label", "split"):
    (root / folder).mkdir(parents=True)
  for video, (frames, two, rows) in VIDEOS.items():
    values = _frames(video, frames, two)
    (root / "skeleton" / f"{video}.txt").write_text(
        "".join(" ".join(f"{v:.6f}" for v in row) + " \n" for row in values))
    (root / "label" / f"{video}.txt").write_text(
        "".join(f"{c},{s},{e},{k}\n" for c, s, e, k in rows))
  _write_split(root / "split" / "cross-subject.txt", *XSUB)
  _write_split(root / "split" / "cross-view.txt", *XVIEW)
  return root


def test_read_skeleton_layout(raw):
  frames = pku_mmd.read_skeleton(str(raw / "skeleton" / "0002-M.txt"))
  assert frames.shape == (50, 3, 25, 2) and frames.dtype == np.float32
  values = _frames("0002-M", 50, True)
  # Line 4, body 2, joint 7 (0-based) lies at values 75 + 3 * 7 .. +3.
  np.testing.assert_allclose(frames[3, :, 7, 1], values[3, 75 + 21:75 + 24], rtol=1e-6)
  np.testing.assert_allclose(frames[3, :, 7, 0], values[3, 21:24], rtol=1e-6)
  one_body = pku_mmd.read_skeleton(str(raw / "skeleton" / "0002-L.txt"))
  assert not one_body[..., 1].any() and one_body[..., 0].all()


def test_read_split_robust(tmp_path):
  path = tmp_path / "s.txt"
  path.write_text("\ufeffTraining videos: 0001-L ,0001-M,\n 0001-R , \n\nValidataion videos:\n"
                  "0004-L,\n0004-M\n\n")
  assert pku_mmd.read_split(str(path)) == (["0001-L", "0001-M", "0001-R"], ["0004-L", "0004-M"])


@pytest.mark.parametrize("text, pattern", [
    ("0001-L, 0001-M\nValidataion videos:\n0002-L\n", r"line 1: expected a 'Training videos:'"),
    ("Training videos:\n0001-L 0001-M\nValidataion videos:\n0002-L\n", r"line 2: '0001-L 0001-M'"),
    ("Training videos:\n0001-L\n", r"no 'Validation videos:' header"),
    ("Training videos:\n0001-L\nValidataion videos:\n\n", r"val list is empty"),
    ("Training videos:\n0001-L\nValidataion videos:\n0001-L\n", r"line 4: video 0001-L already"),
    ("Training videos:\n0001-L\nTraining videos:\n0002-L\n", r"line 3: second train header"),
])
def test_read_split_errors(tmp_path, text, pattern):
  path = tmp_path / "cross-view.txt"
  path.write_text(text)
  with pytest.raises(io.DataError, match=pattern) as info:
    pku_mmd.read_split(str(path))
  assert "cross-view.txt" in str(info.value)


def test_frame_labels_and_clip():
  rows = [pku_mmd.LabelRow(3, 2, 4, 1.0), pku_mmd.LabelRow(1, 7, 7, 2.0)]
  np.testing.assert_array_equal(pku_mmd.frame_labels(rows, 8), [-1, 2, 2, 2, -1, -1, 0, -1])
  frames = np.arange(8)[:, None, None, None] * np.ones((1, 3, 25, 2))
  np.testing.assert_array_equal(pku_mmd.clip(frames, rows[0])[:, 0, 0, 0], [1, 2, 3])


def test_prepare(raw, tmp_path):
  out = tmp_path / "out"
  max_frames = 20
  summary = pku_mmd.prepare(str(raw), str(out), part=2, max_frames=max_frames)
  assert summary["layout"] == "ntu" and summary["part"] == 2 and summary["bad"] == []
  assert summary["splits"] == {"xsub": {"train": 3, "val": 4}, "xview": {"train": 2, "val": 5}}
  assert summary["untrimmed"] == {"xsub": {"train": 2, "val": 2}, "xview": {"train": 2, "val": 2}}

  for split, lists in (("xsub", XSUB), ("xview", XVIEW)):
    for subset, videos in zip(("train", "val"), lists):
      data = np.load(out / split / f"{subset}_data.npy")
      names, labels = io.load_labels(str(out / split / f"{subset}_label.pkl"))
      rows = [(v, r, row) for v in videos for r, row in enumerate(VIDEOS[v][2])]
      assert names == [f"{v}_{r}" for v, r, _ in rows]
      assert labels.tolist() == [row[0] - 1 for _, _, row in rows]
      assert data.dtype == np.float32 and data.shape == (len(rows), 3, max_frames, 25, 2)
      for k, (video, _, (_, start, end, _)) in enumerate(rows):
        frames, two, _ = VIDEOS[video]
        full = _frames(video, frames, two).reshape(frames, 2, 25, 3).transpose(3, 0, 2, 1)
        length = end - start + 1
        if length <= max_frames:  # zero-padded at the end
          np.testing.assert_allclose(data[k, :, :length], full[:, start - 1:end], rtol=1e-6)
          assert not data[k, :, length:].any()
        else:  # centre crop
          first = start - 1 + (length - max_frames) // 2
          np.testing.assert_allclose(data[k], full[:, first:first + max_frames], rtol=1e-6)
        assert data[k, ..., 1].any() == two

      untrimmed = pku_mmd.load_untrimmed(str(out / "untrimmed" / split), subset)
      with open(out / "untrimmed" / split / f"{subset}_names.pkl", "rb") as f:
        assert pickle.load(f) == videos
      offsets = np.load(out / "untrimmed" / split / f"{subset}_offsets.npy")
      assert offsets.dtype == np.int64 and offsets.tolist() == np.cumsum(
          [0] + [VIDEOS[v][0] for v in videos]).tolist()
      assert np.load(out / "untrimmed" / split / f"{subset}_frame_labels.npy").dtype == np.int32
      assert np.load(out / "untrimmed" / split / f"{subset}_frames.npy").shape == (
          offsets[-1], 3, 25, 2)
      for video, (frames, labels) in zip(videos, untrimmed):
        num, two, video_rows = VIDEOS[video]
        assert frames.shape == (num, 3, 25, 2) and labels.shape == (num,)
        np.testing.assert_allclose(
            frames, _frames(video, num, two).reshape(num, 2, 25, 3).transpose(0, 3, 2, 1),
            rtol=1e-6)
        expected = np.full(num, -1)
        for cls, start, end, _ in video_rows:
          expected[start - 1:end] = cls - 1
        np.testing.assert_array_equal(labels, expected)

  # Spot checks of the frame labels, by hand: 0003-L rows 12@3..8, 12@20..79, 2@80..80.
  _, labels = pku_mmd.load_untrimmed(str(out / "untrimmed" / "xsub"), "val")[0]
  assert labels[:2].tolist() == [-1, -1] and labels[2:8].tolist() == [11] * 6
  assert labels[8:19].tolist() == [-1] * 11 and labels[79] == 1 and labels[78] == 11


def test_prepare_reports_every_bad_video(raw, tmp_path):
  skeleton = raw / "skeleton" / "0002-M.txt"
  lines = skeleton.read_text().splitlines()
  lines[6] = " ".join(lines[6].split()[:149])
  skeleton.write_text("\n".join(lines) + "\n")
  (raw / "label" / "0003-R.txt").write_text("7,11,25,1\n3,30,41,1\n")  # video has 40 frames
  os.remove(raw / "skeleton" / "0002-L.txt")
  out = tmp_path / "out"
  with pytest.raises(io.DataError) as info:
    pku_mmd.prepare(str(raw), str(out))
  message = str(info.value)
  assert "3 bad" in message
  assert "0002-M.txt: line 7: expected 150 values, got 149" in message
  assert "0003-R.txt: line 2: frames 30..41 run past the video's 40 frames" in message
  assert ("0002-L.txt: video 0002-L is in the split lists but its skeleton file is missing"
          in message)
  assert not out.exists()

  summary = pku_mmd.prepare(str(raw), str(out), skip_bad=True, max_frames=10)
  assert len(summary["bad"]) == 3
  assert summary["splits"]["xsub"] == {"train": 0, "val": 3}
  assert summary["untrimmed"]["xview"] == {"train": 0, "val": 1}
  assert np.load(out / "xsub" / "train_data.npy").shape == (0, 3, 10, 25, 2)
  assert np.load(out / "xsub" / "val_data.npy").shape == (3, 3, 10, 25, 2)
  assert pku_mmd.load_untrimmed(str(out / "untrimmed" / "xview"), "train") == []


@pytest.mark.parametrize("content, pattern", [
    ("1,5,3,1\n", r"line 1: frames 5..3"),
    ("1,0,3,1\n", r"line 1: frames 0..3"),
    ("1,2,3,1\n52,4,5,1\n", r"line 2: class 52"),
    ("1,2,3\n", r"line 1: expected 'class,start,end,confidence'"),
    ("1,a,3,1\n", r"line 1: non-numeric"),
    ("\n", r"no label rows"),
])
def test_read_labels_errors(tmp_path, content, pattern):
  path = tmp_path / "0001-L.txt"
  path.write_text(content)
  with pytest.raises(io.DataError, match=pattern) as info:
    pku_mmd.read_labels(str(path), 10)
  assert "0001-L.txt" in str(info.value)


def test_read_labels_tolerates_spaces_and_trailing_commas(tmp_path):
  path = tmp_path / "0001-L.txt"
  path.write_text(" 3, 1, 10, 1,\n\n51,10,10,2\n")
  rows = pku_mmd.read_labels(str(path), 10)
  assert rows == [(3, 1, 10, 1.0), (51, 10, 10, 2.0)]


def test_skeleton_errors(tmp_path):
  path = tmp_path / "0001-L.txt"
  path.write_text(" ".join(["0.5"] * 150) + "\n" + " ".join(["0.5"] * 149 + ["x"]) + "\n")
  with pytest.raises(io.DataError, match=r"0001-L.txt: line 2: non-numeric"):
    pku_mmd.read_skeleton(str(path))
  path.write_text(" ".join(["0.5"] * 150) + "\n\n" + " ".join(["0.5"] * 150) + "\n")
  with pytest.raises(io.DataError, match=r"0001-L.txt: line 2: expected 150 values, got 0"):
    pku_mmd.read_skeleton(str(path))
  path.write_text("")
  with pytest.raises(io.DataError, match=r"0001-L.txt: empty skeleton file"):
    pku_mmd.read_skeleton(str(path))


def test_missing_split_file(raw, tmp_path):
  os.remove(raw / "split" / "cross-view.txt")
  with pytest.raises(io.DataError, match=r"no xview split file"):
    pku_mmd.prepare(str(raw), str(tmp_path / "out"))


def test_overlapping_rows_later_wins_with_warning(caplog):
  rows = [pku_mmd.LabelRow(3, 2, 5, 1.0), pku_mmd.LabelRow(4, 5, 6, 1.0)]
  labels = pku_mmd.frame_labels(rows, 7, "0001-L.txt")
  np.testing.assert_array_equal(labels, [-1, 2, 2, 2, 3, 3, -1])
  assert "0001-L.txt: label rows overlap on frames 5..6" in caplog.text
