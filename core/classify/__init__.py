"""Land-cover maps from training samples over SoftCon embeddings (``python -m core.classify``).

A user has a Sentinel-2 raster and a layer of labelled points or polygons and wants a map they can trust,
with its accuracy. Public API (used by the QGIS plugin)::

    fit.classify(raster, samples, label_field, out_dir, method="auto", ..., embed_spec=EmbedSpec(...)) -> ClassifyResult
    apply.apply_classifier(raster, classifier_path, out_dir, ...) -> ClassifyResult
    maps.similarity_map(raster_or_embedding, reference_vector, out_path, ...) -> Path
    maps.pca_preview(embedding_raster, out_path) -> Path
    maps.kmeans_map(embedding_raster, n_clusters, out_path, seed=0) -> Path
    demo.run_demo(out_dir="outputs/demo", method="auto", ...) -> ClassifyResult

``raster`` is a raster file, a list of single-band files (stacked on the finest grid), or an embedding
raster written by ``core.embed`` (then its model tag must match the model asked for).

Modules: ``embedding`` (the embedding raster behind a map, cached), ``fit`` / ``apply`` (train and map,
apply a saved classifier), ``outputs`` (staged outputs, moved into place together), ``maps`` (maps without
labels), ``classifiers`` (kNN, linear, prototype, rf, hgb), ``features`` / ``pixelmap`` (feature groups on the
raster's own grid), ``selection`` / ``report`` (blocked CV, method choice, reports), ``compat`` (classifier
vs embeddings checks), ``analysis`` (similarity, PCA, k-means rasters), ``styles`` / ``quicklook``, ``demo``,
``cli``.
"""
