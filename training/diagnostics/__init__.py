"""Diagnostics of multi-task training: FD, GDS, GMS, conflict ratio, inter-task vs inter-sample
similarity (the trainer's `DiagnosticsHook` runs `compute_diagnostics`) and Ranking Similarity (used by
the report).

See docs/diagnostics.md for definitions, conventions and how to read the report.
"""

from training.diagnostics.config import DiagnosticsConfig
from training.diagnostics.feature_disentanglement import feature_disentanglement
from training.diagnostics.gradient_similarity import (
    GradientSimilarity,
    conflict_ratio,
    gds,
    gms,
    pairwise_conflict,
    pairwise_cosine,
    pairwise_gms,
)
from training.diagnostics.hook import DiagnosticsHook, compute_diagnostics
from training.diagnostics.inter_sample import InterSimilarity, inter_task_vs_inter_sample, per_sample_view
from training.diagnostics.ranking import RankingSimilarity, ranking_similarity

__all__ = [
    "DiagnosticsConfig",
    "DiagnosticsHook",
    "GradientSimilarity",
    "InterSimilarity",
    "RankingSimilarity",
    "compute_diagnostics",
    "conflict_ratio",
    "feature_disentanglement",
    "gds",
    "gms",
    "inter_task_vs_inter_sample",
    "pairwise_conflict",
    "pairwise_cosine",
    "pairwise_gms",
    "per_sample_view",
    "ranking_similarity",
]
