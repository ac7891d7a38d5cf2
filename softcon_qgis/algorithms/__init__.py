"""One QgsProcessingAlgorithm per file; the provider registers every class in ALGORITHMS."""
from .apply_classifier import ApplyClassifierAlgorithm
from .assess_accuracy import AssessAccuracyAlgorithm
from .classify import ClassifyAlgorithm
from .embed import EmbedAlgorithm
from .kmeans import KMeansAlgorithm
from .model_info import ModelInfoAlgorithm
from .pca_preview import PcaPreviewAlgorithm
from .similarity import SimilarityAlgorithm
from .validation_sample import ValidationSampleAlgorithm

ALGORITHMS = [
    ModelInfoAlgorithm,
    EmbedAlgorithm,
    ClassifyAlgorithm,
    ApplyClassifierAlgorithm,
    SimilarityAlgorithm,
    PcaPreviewAlgorithm,
    KMeansAlgorithm,
    ValidationSampleAlgorithm,
    AssessAccuracyAlgorithm,
]
