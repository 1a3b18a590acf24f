"""The evaluations of brainSPADE3D, one class per study, assembled by evaluate.json.

- ``LesionPresenceStudy`` (``presence.py``): label maps sampled for fixed lesion conditions; the share
  of samples in which every requested lesion appears, with volumes.
- ``SimilarityStudy`` (``similarity.py``): each held-out label map through the image generator for
  every contrast; SSIM and MSE against the real image, whole volume and per tissue class.
- ``SegmentationStudy`` (``segmentation.py``): one segmenter recipe trained on real and on synthetic
  pairs, Dice per class on held-out real pairs; the synthetic images' feature distance.
- ``UnexpectedPathologyStudy`` (``pathology.py``): healthy-only training against healthy + synthetic
  tumour cases, tested on held-out tumour cases.

Shared pieces: ``data.py`` (splits loaded once), ``pairs.py`` (real and synthetic segmentation pairs),
``segmenter.py`` (train with the config's SupervisedTrainer partial, then Dice), ``metrics.py``,
``seeds.py`` (one named seed stream per random thing). ``report.py`` runs the studies a config names
and writes ``evaluation.json``. Every setting is a config key, so tests run the full protocol on toy data.
"""

from __future__ import annotations

from scripts.evaluation.data import EvaluationSplits, split_loaders
from scripts.evaluation.metrics import describe_loss, dice_per_class, finite_mean, similarity_metrics
from scripts.evaluation.pairs import SegmentationPairs
from scripts.evaluation.pathology import UnexpectedPathologyStudy
from scripts.evaluation.presence import LesionPresenceStudy
from scripts.evaluation.report import EvaluationReport
from scripts.evaluation.seeds import seed_stream, stream_seeds
from scripts.evaluation.segmentation import SegmentationStudy
from scripts.evaluation.segmenter import SegmenterTraining
from scripts.evaluation.similarity import SimilarityStudy

__all__ = [
    "EvaluationReport",
    "EvaluationSplits",
    "LesionPresenceStudy",
    "SegmentationPairs",
    "SegmentationStudy",
    "SegmenterTraining",
    "SimilarityStudy",
    "UnexpectedPathologyStudy",
    "describe_loss",
    "dice_per_class",
    "finite_mean",
    "seed_stream",
    "similarity_metrics",
    "split_loaders",
    "stream_seeds",
]
