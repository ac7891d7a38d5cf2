"""SoftCon core: encoders, preprocessing, inference and classification, free of QGIS.

Follows Wang et al., 2024, "Multi-Label Guided Soft Contrastive Learning for Efficient
Earth Observation Pretraining" (arXiv 2405.20462). Modules import each other relatively,
so the plugin zip can ship this package as ``softcon_qgis.core``.
"""
