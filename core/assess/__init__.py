"""Accuracy assessment and area estimation by the book (``python -m core.assess sample|estimate``).

A map is assessed from a probability sample, not from its training points (Olofsson et al. 2014): a stratified
random sample of the map's classes, labelled by eye in QGIS, then design-based estimates of accuracy and area
with confidence intervals. Public API (used by the QGIS plugin)::

    sampling.create_sample(map, out_gpkg, size=None, min_per_class=20, expected_ua=0.85, target_se=0.015,
                           seed=0, progress=None) -> SampleResult
    accuracy.assess_accuracy(map, sample, out_dir, reference_field="reference", stratum_field="stratum",
                             layer=None, progress=None) -> AssessResult

Modules: ``classmap`` (legend and pixel counts of a class raster), ``sampling`` (sample size, allocation, drawing),
``layer`` (the GeoPackage sample and its QGIS style), ``reference`` (the labelled sample on the map),
``estimation`` (the stratified estimators), ``accuracy`` (the design and the run), ``report``, ``cli``.
"""
