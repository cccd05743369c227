"""Evaluation on frozen features: kNN, linear probe, metrics, semi-supervised subsets, ensemble.

These modules work on arrays (features, labels, logits); restoring encoders and
extracting features happens in the caller.
"""

from actclr_jax.evaluate.ensemble import ensemble_logits, ensemble_report
from actclr_jax.evaluate.knn import knn_accuracy, knn_predict, knn_predict_multi
from actclr_jax.evaluate.linear import predict_logits, train_linear
from actclr_jax.evaluate.metrics import (confusion_matrix, segmentation_metrics,
                                         topk_accuracy)
from actclr_jax.evaluate.semi import sample_per_class
