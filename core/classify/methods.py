"""The classifier registry: each method declared once, as data (standard library only).

A :class:`Method` names its implementation (``".classifiers:KNNClassifier"``, imported only when it is fitted
or loaded), its parameters with their defaults and flags, the features it suits, and whether ``--method auto``
tries it. Everything else derives from :data:`METHODS`: the ``--method`` choices and the parameter flags of the
command line (:class:`core.classify.spec.FitSpec`), the candidates of ``auto`` (:mod:`.selection`), the keyword
arguments each classifier gets (:meth:`core.classify.spec.FitSpec.method_params`), and the QGIS Classify algorithm's
Method list, parameters and help. Adding a method is one :func:`register_method` call.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import SoftConError
from ..settings import Flag

#: What a method expects of its features: ``cosine`` compares directions (sensible on embeddings alone),
#: ``standardised`` scales every feature itself, ``any`` takes them as they are (trees).
FEATURE_KINDS = ("cosine", "standardised", "any")


@dataclass(frozen=True)
class Param:
    """A classifier parameter a user may set: ``--k 10``, the dialog's 'k (kNN neighbours)'.

    Attributes:
        low, low_open: the smallest allowed value, and whether it is itself excluded (temperature > 0).
        advanced: shown under Advanced in the QGIS dialog.
    """

    name: str
    default: int | float
    title: str
    help: str
    type: type = float
    low: float | None = None
    low_open: bool = False
    advanced: bool = False

    @property
    def cli(self) -> Flag:
        return Flag(f"--{self.name.replace('_', '-')}", self.help, parse=self.type)

    def check(self, value: Any) -> int | float:
        """``value`` as this parameter's type, or a message naming the flag and the rule."""
        try:
            v = self.type(value)
        except (TypeError, ValueError):
            raise SoftConError(f"{self.cli.flag} takes a number, not {value!r}.") from None
        if not math.isfinite(v):  # a NaN passes every comparison below
            raise SoftConError(f"{self.cli.flag} takes a finite number, not {value!r}.")
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            rule = f"greater than {self.low:g}" if self.low_open else f"at least {self.low:g}"
            raise SoftConError(f"{self.cli.flag} must be {rule}, not {value!r}.")
        return v


@dataclass(frozen=True)
class Method:
    """One classifier, declared once.

    Attributes:
        name: its ``--method`` value; title, help: for menus and help texts.
        impl: ``"module:Class"`` (a leading dot: inside ``core.classify``), or the class itself.
        params: the parameters a user may set; seeded: the classifier takes the run's ``seed``.
        features: one of :data:`FEATURE_KINDS`; auto: ``--method auto`` tries it; auto_max_classes: ... only up to
            this many classes (None: any number).
        predict_cost: CPU-seconds to predict a million pixels (30 features, 7 classes, 143 training samples, one
            core of the project's CPU): ``auto`` prefers the cheapest of the methods it cannot tell apart
            (:func:`core.classify.selection.pick`); a Sentinel-2 tile is 120 million pixels.
    """

    name: str
    title: str
    help: str  # words for a dialog as well as a command line: no --flags in it
    impl: str | type
    params: tuple[Param, ...] = ()
    features: str = "any"
    auto: bool = True
    seeded: bool = False
    auto_max_classes: int | None = None
    predict_cost: float = 1.0
    needs: tuple[str, ...] = ()

    def fits(self, groups: Iterable[str]) -> bool:
        """Whether features of these groups hold every group the method needs."""
        return set(self.needs) <= set(groups)

    def check_groups(self, groups: Iterable[str]) -> None:
        """Refuse features that lack a group the method needs, naming the fix (the one message for it)."""
        groups = tuple(groups)
        if not self.fits(groups):
            have = "+".join(groups) or "none"
            raise SoftConError(f"Method {self.name} needs the feature groups {'+'.join(self.needs)} (features: "
                               f"{have}); use --features {'+'.join(self.needs)} (or auto) on a raster with the "
                               f"bands B2, B3, B4 and B8, or another --method.")


#: Method name -> declaration, in order of preference on ties (cheaper, smoother maps first).
METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add (or replace) a method; its parameters must agree with those of the same name elsewhere."""
    if method.features not in FEATURE_KINDS:
        raise ValueError(f"Method {method.name}: features must be one of {FEATURE_KINDS}, not {method.features!r}")
    for p in method.params:
        for other in METHODS.values():
            if other.name != method.name and any(q.name == p.name and q != p for q in other.params):
                raise ValueError(f"Method {method.name}: parameter {p.name} differs from {other.name}'s")
    METHODS[method.name] = method
    return method


def method_choices() -> tuple[str, ...]:
    """The values of ``--method``: ``auto`` and every registered method."""
    return ("auto",) + tuple(METHODS)


def auto_methods(n_classes: int = 0) -> tuple[str, ...]:
    """The methods ``--method auto`` compares for ``n_classes`` classes, in order of preference."""
    return tuple(m.name for m in METHODS.values()
                 if m.auto and (m.auto_max_classes is None or n_classes <= m.auto_max_classes))


def parameters() -> dict[str, Param]:
    """Every parameter any method declares, once each (a shared one, like ``temperature``, once)."""
    out: dict[str, Param] = {}
    for m in METHODS.values():
        for p in m.params:
            out.setdefault(p.name, p)
    return out


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise SoftConError(f"Unknown method {name!r}; use one of: {', '.join(METHODS)}.")
    return METHODS[name]


def load(name: str) -> type:
    """The classifier class of method ``name`` (imported now: scikit-learn and torch only when needed)."""
    impl = get_method(name).impl
    if not isinstance(impl, str):
        return impl
    module, _, attr = impl.partition(":")
    return getattr(importlib.import_module(module, __package__ if module.startswith(".") else None), attr)


TEMPERATURE = Param("temperature", 0.07, "Temperature (kNN and prototype)",
                    "softmax temperature of the kNN vote and the prototype similarities", low=0.0, low_open=True,
                    advanced=True)
PIXEL_WEIGHT = Param("pixel_weight", 0.5, "Pixel weight (fusion)", "exponent of the per-pixel expert in the "
                     "fusion's product of experts (0 = the embedding's logistic regression alone)", low=0.0,
                     advanced=True)
K = Param("k", 20, "k (kNN neighbours)", "neighbours that vote in kNN", type=int, low=1)

# predict_cost: measured by predict_proba on 200 000 random rows, one thread, load average 12 (so ratios)
register_method(Method("linear", "Logistic regression", "logistic regression on standardised features",
                       ".classifiers:LinearClassifier", features="standardised", predict_cost=0.3))
# boosting grows one tree per class and iteration: above 30 classes its cross-validation alone takes minutes
register_method(Method("hgb", "Gradient boosting", "histogram gradient boosting",
                       ".classifiers:BoostingClassifier", seeded=True, auto_max_classes=30,
                       predict_cost=42.0))  # 7 x 100 trees
register_method(Method("rf", "Random forest", "random forest (on the pixel features alone: the per-pixel "
                       "baseline of GIS tools)", ".classifiers:ForestClassifier", seeded=True, predict_cost=6.3))
register_method(Method("knn", "k nearest neighbours", "cosine k nearest neighbours, votes weighted by "
                       "exp(similarity / temperature)", ".classifiers:KNNClassifier", (K, TEMPERATURE),
                       features="cosine", predict_cost=3.9))
register_method(Method("prototype", "Nearest prototype", "nearest class mean (cosine)",
                       ".classifiers:PrototypeClassifier", (TEMPERATURE,), features="cosine", predict_cost=0.3))
# measured as the others (the linear and rf figures above reproduced in the same run), on the demo's emb+pixel
# features (160 + 14 columns); its map upsamples 7 class scores like linear's (pixelmap.linear_head)
register_method(Method("fusion", "Embedding x pixel fusion", "logistic regression on the embedding times logistic "
                       "regression on the pixel's bands and indices (a weighted product of experts: the embedding's "
                       "classes with the pixel's 10 m edges; needs the emb+pixel features)",
                       ".fusion:FusionClassifier", (PIXEL_WEIGHT,), features="standardised", seeded=True,
                       predict_cost=0.9, needs=("emb", "pixel")))
