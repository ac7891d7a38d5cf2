"""Does a saved classifier fit the embeddings it is about to be applied to?

A classifier is a function of features; applied to features of another model, other weights, other
bands, another embedding mode, other feature groups or another grid it still returns a map, one of
garbage. :func:`check_compatible` refuses every such mismatch with one message that names it and the fix.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import SoftConError
from .spec import parse_features


def _weights_words(wid: str) -> str:
    return "a random-init encoder" if wid == "random-init" else f"weights {wid}"


def check_compatible(saved: Any, info: dict[str, Any], weights_id: str, *, what: str, model: str | None = None,
                     mode: str | None = None, features: tuple[str, ...] | None = None,
                     grid: str | None = None) -> None:
    """Raise :class:`SoftConError` naming the first mismatch between a classifier and embeddings.

    Args:
        saved: the :class:`~core.classify.classifiers.SavedClassifier`.
        info: the embedding raster's tags (:func:`core.embed.tags.embedding_info`).
        weights_id: :func:`core.models.weights.weights_id` of the embeddings' weights ("" = not recorded).
        what: the input, in words, for the message.
        model, mode, features, grid: what the user asked for (None = take the classifier's).
    """
    meta = saved.embedding
    spec = saved.features
    trained = meta.get("model")
    if model is not None and trained is not None and model != trained:
        raise SoftConError(f"The classifier was trained on embeddings of model {trained!r}, not {model!r}; "
                           f"leave --model out (or use --model {trained}).")
    for key, flag in (("model", "--model"), ("mode", "--mode"), ("stride", "--stride")):
        want, have = meta.get(key), info.get(key)
        if want is not None and have is not None and str(want) != str(have):
            raise SoftConError(f"The classifier was trained on {key} {want!r} embeddings but {what} holds {key} "
                               f"{have!r} ones; give the original raster (it is embedded as the classifier needs) "
                               f"or embeddings made with {flag} {want}.")
    if mode is not None and meta.get("mode") is not None and mode != meta["mode"]:
        raise SoftConError(f"The classifier was trained on {meta['mode']} embeddings; --mode {mode} cannot apply "
                           f"it. Leave --mode out, or train a classifier in {mode} mode.")
    want_b, have_b = meta.get("bands"), info.get("bands")
    if want_b and have_b and list(want_b) != list(have_b):
        raise SoftConError(f"The classifier was trained on embeddings of bands {','.join(want_b)} but {what} "
                           f"gives bands {','.join(have_b)}; apply it to a raster of the same sensor and bands.")
    want_w = meta.get("weights_id") or ""
    if want_w and weights_id and want_w != weights_id:
        raise SoftConError(f"The classifier was trained on embeddings from {_weights_words(want_w)} but {what} "
                           f"comes from {_weights_words(weights_id)}; use the same weights (--random-init, "
                           f"--checkpoint or the model's pretrained weights, as when training).")
    if meta.get("dim") and info.get("dim") and int(meta["dim"]) != int(info["dim"]):
        raise SoftConError(f"The classifier expects {meta['dim']}-dimensional embeddings but {what} has "
                           f"{info['dim']}; use embeddings of model {trained}.")
    if spec is None:
        return
    if features is not None and tuple(features) != tuple(spec.groups):
        raise SoftConError(f"The classifier uses the feature groups {spec.name}, not {'+'.join(features)}; "
                           f"features are fixed when training: leave --features out, or train another classifier.")
    if grid is not None and grid != spec.grid:
        raise SoftConError(f"The classifier was trained on the {spec.grid} grid, not the {grid} grid; leave --grid "
                           f"out, or train a classifier with --grid {grid}.")


def check_expected(saved: Any, expect: Mapping[str, str | None] | None) -> dict[str, Any]:
    """What a caller requires of a classifier (``model``, ``mode``, ``features``, ``grid``; None = whatever it
    has), checked against it before any raster is opened, and returned as :func:`check_compatible` takes it."""
    asked: dict[str, Any] = {key: (expect or {}).get(key) for key in ("model", "mode", "features", "grid")}
    asked["features"] = parse_features(asked["features"])
    check_compatible(saved, {}, "", what="", **asked)
    return asked
