"""Land-cover maps from training samples over SoftCon embeddings (``python -m core.classify``).

A user has a Sentinel-2 raster and a layer of labelled points or polygons and wants a map they can trust,
with its accuracy. Public API (the command line and the QGIS plugin use it; settings travel as two frozen
specs, :class:`core.embed.spec.EmbedSpec` and :class:`core.classify.spec.FitSpec`)::

    fit.classify(raster, samples, out_dir, spec, fit, *, save_classifier, cache, destinations, progress,
                 validation) -> ClassifyResult     # samples, validation: core.geo.samples.Samples(path, field, layer)
    apply.apply_classifier(raster, classifier_path, out_dir, spec, *, expect, cache, destinations, progress)
    explore.similarity_map(raster_or_embedding, reference_vector, out_path, spec, *, fids, layer, grid, ...) -> Path
    explore.pca_preview(embedding_raster, out_path, *, progress) -> Path
    explore.kmeans_map(embedding_raster, n_clusters, out_path, *, seed, progress) -> Path
    demo.run_demo(out_dir="outputs/demo", spec=None, fit=None, *, cache, progress) -> ClassifyResult

``raster`` is a raster file, a list of single-band files (stacked on the finest grid), or an embedding
raster written by ``core.embed`` (then its model tag must match ``spec.model``).

Modules: ``spec`` (``FitSpec``), ``methods`` (the classifier registry), ``embedding`` (the embedding raster
behind a map, cached), ``fit`` / ``apply`` (train and map, apply a saved classifier), ``outputs`` (staged
outputs, moved into place together), ``explore`` (maps without labels), ``classifiers`` (the classifier
classes), ``features`` / ``pixelmap`` (feature groups on the raster's own grid), ``selection`` / ``report``
(blocked CV, method choice, reports), ``compat`` (classifier vs embeddings checks), ``styles`` (how every output
looks, as data) / ``quicklook``, ``demo``, ``cli``.
"""
