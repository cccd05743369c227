"""Evaluation of a pretrained encoder.

Array-level blocks (features, labels, logits in; numbers out): knn, linear, metrics, semi,
ensemble. The evaluators (`--mode` of main.py) and their registry: evaluators.py, on
pretrained.py (checkpoint restore), features.py (frozen features and their cache),
classifier.py (the one classifier-training loop), segment.py, figures.py and base.py (the
interface and the record). monitor.py is the pretraining monitor; nuisance.py probes what
frozen features encode besides the action; probe_selection.py is a linear probe whose lr and
weight decay are chosen by cross-validation on the training set (a diagnostic).
"""

from actclr_jax.evaluate.ensemble import ensemble_logits, ensemble_report
from actclr_jax.evaluate.knn import knn_accuracy, knn_predict, knn_predict_multi
from actclr_jax.evaluate.linear import predict_logits, train_linear
from actclr_jax.evaluate.metrics import (confusion_matrix, segmentation_metrics,
                                         topk_accuracy)
from actclr_jax.evaluate.semi import sample_per_class

__all__ = ["confusion_matrix", "ensemble_logits", "ensemble_report", "knn_accuracy",
           "knn_predict", "knn_predict_multi", "predict_logits", "sample_per_class",
           "segmentation_metrics", "topk_accuracy", "train_linear"]
