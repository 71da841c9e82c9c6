"""Evaluation metrics."""
from .iou_metric import IoUMetric, intersect_and_union, totals_to_metrics

__all__ = ['IoUMetric', 'intersect_and_union', 'totals_to_metrics']
