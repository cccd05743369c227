"""The pretraining run's end-of-job summary: one row per epoch from metrics.jsonl, as a table."""

from __future__ import annotations

import json
import re

# The monitor's keys that the per-epoch table shows (the KNN keys carry their k).
_MONITOR_KEYS = ("actionlet_iou", "random_mask_iou", "feature_effective_rank")
_KNN = re.compile(r"^knn_(standardized_|recalibrated_)?top1_k(\d+)$")


def _is_monitor_key(key: str) -> bool:
  return key in _MONITOR_KEYS or bool(_KNN.match(key))


def epoch_table(metrics_path: str) -> list[dict]:
  """One row per epoch (0: before training) from metrics.jsonl: the epoch's mean loss terms and
  phase, and the monitor's values when it ran. A step logged twice keeps its last record."""
  by_step = {}
  with open(metrics_path) as f:
    for line in f:
      record = json.loads(line)
      by_step.setdefault(record["step"], {}).update(record)
  rows = {}
  for step, record in sorted(by_step.items()):
    epoch = int(record["epoch_end"]) if "epoch_end" in record else (0 if step == 0 else None)
    if epoch is None:
      continue
    keep = {k: v for k, v in record.items()
            if k == "phase" or k.startswith("epoch_") or _is_monitor_key(k)}
    rows.setdefault(epoch, {"epoch": epoch}).update(keep)
  return [rows[e] for e in sorted(rows)]


def from_metrics(metrics_path: str, summary: dict) -> dict:
  """The summary's table fields: per_epoch rows, the untrained network's monitor (epoch 0) as
  untrained_*, and the last monitored epoch's values where this process did not monitor (a
  run resumed after its last monitor)."""
  rows = epoch_table(metrics_path)
  out = {"per_epoch": rows}
  if rows and rows[0]["epoch"] == 0:
    out.update({f"untrained_{k}": v for k, v in rows[0].items() if _is_monitor_key(k)})
  monitored = [r for r in rows if r["epoch"] > 0 and any(_is_monitor_key(k) for k in r)]
  if monitored:
    out.update({k: v for k, v in monitored[-1].items()
                if _is_monitor_key(k) and k not in summary})
  return out


def format_summary(summary: dict) -> str:
  """The run's result as a short table: per epoch the loss (and, with log_class_split, InfoNCE's
  class and instance terms), KNN and actionlet IoU, then the untrained network against the
  trained one."""
  rows = summary.get("per_epoch", [])
  keys = {k for r in rows for k in r}
  ks = sorted({int(m.group(2)) for m in map(_KNN.match, keys) if m})
  k = 20 if 20 in ks or not ks else ks[0]  # the README reports k=20
  knn, knn_std = f"knn_top1_k{k}", f"knn_standardized_top1_k{k}"
  knn_recal = f"knn_recalibrated_top1_k{k}"
  has_iou, has_recal = "actionlet_iou" in keys, knn_recal in keys
  has_split = "epoch_class_term" in keys  # config key log_class_split
  head = ("epoch | phase | loss    | infonce | mining  | "
          + ("class   | instance | " if has_split else "")
          + f"{f'KNN k={k}':8} | KNN std. | " + ("KNN BN recal. | " if has_recal else "")
          + "eff. rank")
  head += " | actionlet IoU | same-area random IoU" if has_iou else ""
  status = " (stopped by SIGTERM; run again to resume)" if summary.get("preempted") else ""
  lines = ["", f"pretraining finished: {summary['step']} steps in {summary['wall_seconds']:.0f} s"
           f"{status}", head]
  cell = lambda r, key, fmt: (fmt % r[key]) if key in r else "-".rjust(len(fmt % 0.0))
  for r in rows:
    line = (f"{r['epoch']:5d} | {('-' if 'phase' not in r else r['phase']):>5} | "
            f"{cell(r, 'epoch_loss', '%7.4f')} | {cell(r, 'epoch_infonce', '%7.4f')} | "
            f"{cell(r, 'epoch_mining', '%7.4f')} | "
            + (f"{cell(r, 'epoch_class_term', '%7.4f')} | "
               f"{cell(r, 'epoch_instance_term', '%8.4f')} | " if has_split else "")
            + f"{cell(r, knn, '%8.2f')} | {cell(r, knn_std, '%8.2f')} | "
            + (f"{cell(r, knn_recal, '%13.2f')} | " if has_recal else "")
            + f"{cell(r, 'feature_effective_rank', '%9.1f')}")
    if has_iou:
      line += (f" | {cell(r, 'actionlet_iou', '%13.3f')} | "
               f"{cell(r, 'random_mask_iou', '%20.3f')}")
    lines.append(line)
  for key, name in ((knn, f"KNN k={k}"), (knn_std, f"KNN k={k}, standardised features"),
                    (knn_recal, f"KNN k={k}, BatchNorm recalibrated on clean training data")):
    if f"untrained_{key}" in summary and key in summary:
      lines.append(f"{name}: untrained {summary[f'untrained_{key}']:.2f} -> trained "
                   f"{summary[key]:.2f}")
  if "untrained_actionlet_iou" in summary and "actionlet_iou" in summary:
    lines.append(f"actionlet IoU: untrained {summary['untrained_actionlet_iou']:.3f} -> trained "
                 f"{summary['actionlet_iou']:.3f} (same-area random mask "
                 f"{summary['random_mask_iou']:.3f})")
  return "\n".join(lines)
