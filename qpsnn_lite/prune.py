r"""Structured (channel) pruning of spiking CNNs: one import for the criteria, the scoring and the surgery.

Taught in chapter 05 (structured pruning, the SCA baseline, weight-L1 / firing-rate / random criteria, batch-to-batch
instability) and chapter 06 (SVS, the paper's criterion, and its stability, Eq. 15). ``from qpsnn_lite import prune``
then ``prune.score(...)``, ``prune.apply(...)`` is how the chapters use it. The code lives in three modules, one per
thing the chapters teach:

- :mod:`qpsnn_lite.criteria`: what a channel's score is (the equations, SVS, SCA, L1, firing rate, random), the
  registry of criteria (:func:`register_criterion`, a criterion's own finalisation and tie-breaks) and the stability
  measure AvgCosS (:func:`avg_cos_similarity`);
- :mod:`qpsnn_lite.scoring`: running a criterion over a model and a loader (:func:`score`, :func:`score_per_batch`);
- :mod:`qpsnn_lite.surgery`: choosing channels (:func:`keep_indices`), coupling the layers a shortcut joins, cutting
  the channels out (:func:`apply`), the mask form (:func:`masked`) and :func:`recalibrate_bn`.

Prunable layers (:func:`prunable_layers`) and the :class:`IndexedShortcut` that pruning leaves in a ResNet are
building blocks, in :mod:`qpsnn_lite.layers`. The choices made where the paper is silent are listed in each module
and explained in ``docs/design.md``, "Pruning".
"""
from __future__ import annotations

from .criteria import (CRITERIA, Criterion, LayerActivity, avg_cos_similarity, epsilon_rank, firing_rate_score,
                       l1_norm_score, register_criterion, sca_score, svs_score)
from .layers import IndexedShortcut, PrunableLayer, prunable_layers
from .scoring import score, score_per_batch
from .surgery import INPUT, apply, keep_indices, masked, plan, recalibrate_bn

__all__ = [
    "CRITERIA",
    "Criterion",
    "LayerActivity",
    "PrunableLayer",
    "IndexedShortcut",
    "INPUT",
    "register_criterion",
    "prunable_layers",
    "epsilon_rank",
    "svs_score",
    "sca_score",
    "firing_rate_score",
    "l1_norm_score",
    "score",
    "score_per_batch",
    "keep_indices",
    "plan",
    "apply",
    "masked",
    "recalibrate_bn",
    "avg_cos_similarity",
]

# ``doctest.testmod(prune)`` skips objects defined in other modules; this lists the re-exported ones with examples.
__test__ = {name: globals()[name] for name in ("epsilon_rank", "svs_score", "keep_indices", "avg_cos_similarity")}
