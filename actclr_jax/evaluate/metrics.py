"""Classification and frame-level segmentation metrics (numpy, all in percent)."""

from __future__ import annotations

import numpy as np


def _labels_1d(labels, n: int | None, what: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{what}: expected a 1-D array of class ids, got shape {labels.shape}")
  if n is not None and len(labels) != n:
    raise ValueError(f"{what}: {len(labels)} entries for {n} samples")
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    if not np.all(labels == np.round(labels)):
      raise ValueError(f"{what}: class ids must be integers")
  return labels.astype(np.int64)


def topk_ranks(logits, labels) -> np.ndarray:
  """(N,) 0-based rank of the true class in each row of `logits` (N, C).

  Ties go to the lower class index, as with argmax, so a constant row ranks class y
  at position y (a degenerate classifier is not credited for ties).
  """
  logits = np.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"logits: expected (N, C), got shape {logits.shape}")
  labels = _labels_1d(labels, logits.shape[0], "labels")
  if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
    raise ValueError(f"labels: class ids must lie in [0, {logits.shape[1]}), "
                     f"got [{labels.min()}, {labels.max()}]")
  true = np.take_along_axis(logits, labels[:, None], axis=1)
  above = (logits > true).sum(1)
  tied_before = ((logits == true) & (np.arange(logits.shape[1])[None] < labels[:, None])).sum(1)
  return above + tied_before


def topk_accuracy(logits, labels, k: int = 1) -> float:
  """Top-k accuracy in percent of `logits` (N, C) against integer `labels` (N,).

  k larger than C counts every sample as correct.
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  ranks = topk_ranks(logits, labels)
  if ranks.size == 0:
    raise ValueError("topk_accuracy: no samples")
  return float(100.0 * np.mean(ranks < k))


def accuracy(pred, labels) -> float:
  """Fraction of `pred` (N,) equal to `labels` (N,), in percent."""
  labels = _labels_1d(labels, None, "labels")
  pred = _labels_1d(pred, len(labels), "pred")
  if labels.size == 0:
    raise ValueError("accuracy: no samples")
  return float(100.0 * np.mean(pred == labels))


def confusion_matrix(pred, label, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
  """(num_classes, num_classes) int64 counts; entry [i, j] counts label i predicted as j.

  `pred` and `label` are integer arrays of the same shape (any shape, e.g. per frame).
  Positions whose label equals `ignore_index` are dropped; every other id must lie in
  [0, num_classes).
  """
  pred = np.asarray(pred).reshape(-1)
  label = np.asarray(label).reshape(-1)
  if pred.shape != label.shape:
    raise ValueError(f"pred has {pred.size} entries but label has {label.size}")
  label = _labels_1d(label, None, "label")
  pred = _labels_1d(pred, len(label), "pred")
  if ignore_index is not None:
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
  for name, ids in (("label", label), ("pred", pred)):
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
      raise ValueError(f"{name}: class ids must lie in [0, {num_classes}), "
                       f"got [{ids.min()}, {ids.max()}]")
  flat = np.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
  return flat.reshape(num_classes, num_classes).astype(np.int64)


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, float]:
  """ACC, MACC, FWIoU and mIoU (percent) from a confusion matrix (rows = labels).

  With TP_c the diagonal, n_c = TP_c + FN_c the label count and p_c = TP_c + FP_c the
  prediction count of class c, and N the number of frames:
    acc   = sum_c TP_c / N;
    macc  = mean over classes with n_c > 0 of TP_c / n_c (per-class recall);
    IoU_c = TP_c / (n_c + p_c - TP_c) = TP_c / (TP_c + FP_c + FN_c);
    miou  = mean of IoU_c over classes with TP_c + FP_c + FN_c > 0, i.e. present in the
            labels or the predictions (a class that is only ever predicted counts as 0);
    fwiou = sum_c (n_c / N) IoU_c.
  """
  confusion = np.asarray(confusion, dtype=np.float64)
  total = confusion.sum()
  if total <= 0:
    raise ValueError("segmentation metrics: no (non-ignored) frames")
  tp = np.diag(confusion)
  n_label = confusion.sum(1)
  n_pred = confusion.sum(0)
  union = n_label + n_pred - tp
  present = n_label > 0
  seen = union > 0
  iou = np.divide(tp, union, out=np.zeros_like(tp), where=seen)
  recall = np.divide(tp, n_label, out=np.zeros_like(tp), where=present)
  return {
      "acc": float(100.0 * tp.sum() / total),
      "macc": float(100.0 * recall[present].mean()),
      "fwiou": float(100.0 * np.sum(n_label / total * iou)),
      "miou": float(100.0 * iou[seen].mean()),
  }


def segmentation_metrics(pred, label, num_classes: int,
                         ignore_index: int | None = None) -> dict[str, float]:
  """Frame-level ACC, MACC, FWIoU and mIoU in percent; see `metrics_from_confusion`.

  Args:
    pred: per-frame predicted class ids, any shape (e.g. (num_frames_total,)).
    label: per-frame true class ids, same shape.
    num_classes: number of classes (background included if it is a class).
    ignore_index: label value whose frames are left out of every metric.
  """
  return metrics_from_confusion(confusion_matrix(pred, label, num_classes, ignore_index))
