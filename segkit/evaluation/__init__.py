"""Evaluation metrics."""
from .base_metric import BaseMetric
from .iou_metric import IoUMetric, intersect_and_union, totals_to_metrics

__all__ = ['BaseMetric', 'IoUMetric', 'intersect_and_union', 'totals_to_metrics']
