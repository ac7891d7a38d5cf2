"""``FitSpec``: every setting of the classifier side of a map (method, features, grid, cross-validation), built once
by the command line or the plugin and carried unchanged to :func:`core.classify.fit.classify`.

Standard library only, like :class:`core.embed.spec.EmbedSpec`: the QGIS process reads defaults and choices from
here without numpy or scikit-learn. Each field declares its flag (:mod:`core.settings`); ``__post_init__`` is the
one check of every value, for the command line and the plugin alike.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import SoftConError
from ..settings import check_choices, entries, fail, setting
from .methods import get_method, method_choices, parameters

#: Feature groups, in the order a feature vector joins them (see :mod:`core.classify.features`).
FEATURE_GROUPS = ("emb", "pixel")
#: Named feature sets, as offered on the command line and in the plugin.
FEATURE_SETS: dict[str, tuple[str, ...]] = {"emb+pixel": ("emb", "pixel"), "emb": ("emb",), "pixel": ("pixel",)}
#: Map grids: the input raster's own pixels, or the embedding's token grid.
GRIDS = ("pixel", "embedding")

FEATURES_HELP = ("feature groups: auto (every available set, the best on --validation or by blocked CV), emb (the "
                 "embedding and its ~1 km neighbourhood, upsampled to the pixel grid guided by the pixel's bands), "
                 "pixel (the pixel's bands and NDVI/NDWI/MNDWI/NDBI; with --method rf, the per-pixel random-forest "
                 "baseline), or emb+pixel")


def parse_features(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"emb+pixel"`` / ``"pixel,emb"`` / ``["emb", "pixel"]`` -> groups in :data:`FEATURE_GROUPS` order;
    None or ``auto`` -> None (let CV pick)."""
    if text is None or text == "auto":
        return None
    parts = text.replace(",", "+").split("+") if isinstance(text, str) else list(text)
    groups = tuple(g for g in FEATURE_GROUPS if g in parts)
    unknown = [p for p in parts if p not in FEATURE_GROUPS]
    if unknown or not groups:
        raise SoftConError(f"Unknown feature group(s) {unknown or parts} in --features; use auto or a combination "
                           f"of {', '.join(FEATURE_GROUPS)} joined by '+', e.g. emb+pixel.")
    return groups


def feature_choices() -> tuple[str, ...]:
    return ("auto",) + tuple(FEATURE_SETS)


@dataclass(frozen=True)
class FitSpec:
    """How the classifier is chosen, trained and validated.

    Attributes:
        method: ``auto`` (every method of :data:`core.classify.methods.METHODS` that ``auto`` tries, on every
            feature set, the best by spatially blocked CV) or one method.
        features: ``auto`` or a feature set of :data:`FEATURE_SETS`; grid: one of :data:`GRIDS`.
        cv_folds: folds of the blocked cross-validation (0 = none); block_size_m: CV block side (None = the range of
            the embedding's spatial autocorrelation, at least twice the model window's footprint).
        max_pixels_per_polygon: cap on the training pixels one polygon gives; seed: sampling and forests.
        compare_methods: with one method, also cross-validate the others for the comparison table.
        min_mapping_unit: the class raster sieved to patches of at least this many pixels (0 or 1 = none).
        params: method parameters (``k``, ``temperature``... as the methods declare them), as sorted
            (name, value) pairs without the defaults; a dict is accepted. Read them with :meth:`param`.
    """

    method: str = setting("auto", "--method", "classifier: auto compares every method on every feature set (on the "
                          "--validation samples when given, else by spatially blocked CV) and maps with the best",
                          choices=method_choices)
    features: str = setting("auto", "--features", FEATURES_HELP, choices=feature_choices)
    grid: str = setting("pixel", "--grid", "pixel: the map on the raster's own grid; embedding: on the token grid",
                        choices=GRIDS)
    cv_folds: int = setting(5, "--cv-folds", "folds of the spatially blocked cross-validation (0 = none)",
                            parse=int)
    block_size_m: float | None = setting(None, "--block-size", "side of the CV blocks in metres (default: the range "
                                         "of the embedding's spatial autocorrelation)", parse=float)
    max_pixels_per_polygon: int = setting(200, "--max-pixels-per-polygon", "most training pixels one polygon "
                                          "gives", parse=int)
    seed: int = setting(0, "--seed", "random seed of the pixel sampling and the forests", parse=int)
    compare_methods: bool = setting(True, "--no-compare", "with one --method, do not cross-validate the others "
                                    "for the comparison table")
    min_mapping_unit: int = setting(0, "--min-mapping-unit", "smallest patch of one class kept in the class map, in "
                                    "pixels (GDAL's sieve filter; 0 = every pixel as classified)", parse=int)
    params: tuple[tuple[str, Any], ...] = entries(lambda: parameters().values())

    def __post_init__(self) -> None:
        fix = object.__setattr__
        groups = parse_features(self.features)
        fix(self, "features", "auto" if groups is None else "+".join(groups))
        check_choices(self)
        try:
            fix(self, "cv_folds", int(self.cv_folds))
            fix(self, "max_pixels_per_polygon", int(self.max_pixels_per_polygon))
            fix(self, "seed", int(self.seed))
            fix(self, "min_mapping_unit", int(self.min_mapping_unit))
            if self.block_size_m is not None:
                fix(self, "block_size_m", float(self.block_size_m))
        except (TypeError, ValueError) as e:
            raise SoftConError(f"A classifier setting is not a number ({e}).") from None
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise SoftConError(f"--cv-folds {self.cv_folds} cannot validate anything: use 2 or more folds, or 0 to "
                               f"skip the validation (the report then has no accuracy).")
        if self.block_size_m is not None and not self.block_size_m > 0:
            fail(FitSpec, "block_size_m", "must be a positive length in metres", self.block_size_m)
        if self.min_mapping_unit < 0:
            fail(FitSpec, "min_mapping_unit", "must be 0 (none) or a number of pixels", self.min_mapping_unit)
        if self.max_pixels_per_polygon < 1:
            fail(FitSpec, "max_pixels_per_polygon", "must be at least 1", self.max_pixels_per_polygon)
        if groups is not None and self.method != "auto":  # before the embedding: fusion on emb alone, say
            get_method(self.method).check_groups(groups)
        fix(self, "compare_methods", bool(self.compare_methods))
        fix(self, "params", _normalise_params(self.params))

    def param(self, name: str) -> Any:
        """The value of method parameter ``name`` (its declared default unless set)."""
        return dict(self.params).get(name, parameters()[name].default)

    def method_params(self, method: str) -> dict[str, Any]:
        """Keyword arguments of ``method``'s classifier: its parameters and, where it takes one, the seed."""
        kw = {p.name: self.param(p.name) for p in get_method(method).params}
        if get_method(method).seeded:
            kw["seed"] = self.seed
        return kw

    def replace(self, **changes: Any) -> "FitSpec":
        return dataclasses.replace(self, **changes)


def _normalise_params(given: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """Checked (name, value) pairs, sorted, defaults dropped: equal settings give equal specs."""
    known = parameters()
    out = []
    for name, value in sorted(dict(given).items()):
        if name not in known:
            raise SoftConError(f"Unknown classifier parameter {name!r}; the methods take: {', '.join(known)}.")
        v = known[name].check(value)
        if v != known[name].default:
            out.append((name, v))
    return tuple(out)
