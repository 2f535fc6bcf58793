"""Shopper lifetime value: features from shopper state, the BG/NBD prior, scoring with the ONNX model and the scheduled
rebuild of every shopper's LTV (tailor.ltv.rebuild). The model is trained in the lab (tailor_lab.training.ltv)."""

from tailor.ltv.features import FEATURE_GROUPS, FEATURE_NAMES, feature_matrix, ltv_features, row_features
from tailor.ltv.scoring import LtvModel, LtvPrediction, typical_counts

__all__ = ["FEATURE_GROUPS", "FEATURE_NAMES", "LtvModel", "LtvPrediction", "feature_matrix", "ltv_features",
           "row_features", "typical_counts"]
