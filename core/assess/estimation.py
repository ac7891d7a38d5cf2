"""Design-based estimates of accuracy and area from a stratified random sample.

Every figure is a ratio of two estimated totals, R = Y / X, with y and x indicators of each sample unit
(Stehman 2014, "Estimating area and map accuracy for stratified random sampling when the strata are different
from the map classes", IJRS 35: 4923-4939, eqs. 2-3 and 26-28):

=======================  ===============================  ==============================
figure                   y_u = 1 when                     x_u = 1 when
=======================  ===============================  ==============================
overall accuracy         map class = reference class      always
area of class k          reference = k                    always
cell p_ij of the matrix  map = i and reference = j        always
user's accuracy of k     map = k and reference = k        map = k
producer's accuracy of k map = k and reference = k        reference = k
=======================  ===============================  ==============================

with Y = sum_h N_h * mean_h(y) over strata h of N_h pixels and its linearised variance
V(R) = sum_h N_h^2 s_h^2(y - R x) / n_h / X^2. When the strata are the map classes these are exactly the
estimators of Olofsson et al. (2014, Remote Sensing of Environment 148: 42-57, eqs. 2-10); with one stratum,
those of simple random sampling. As in Olofsson et al. the finite population correction is left out (a sample
is a vanishing share of a map's pixels), except that a stratum sampled completely contributes no variance.
95 % intervals are +- 1.96 standard errors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Multiplier of a standard error for a 95 % confidence interval (Olofsson et al. 2014).
Z95 = 1.96


@dataclass(frozen=True)
class Estimates:
    """Estimated figures for K classes; ``*_se`` are standard errors; NaN where a ratio is undefined
    (e.g. the producer's accuracy of a class the sample never found).

    Attributes:
        counts: (K, K) sample counts, rows map class, columns reference class.
        matrix: (K, K) estimated area proportions p_ij, rows map, columns reference.
        overall, overall_se: overall accuracy.
        users, users_se, producers, producers_se: (K,) per-class accuracies.
        area, area_se: (K,) estimated proportion of area of each reference class.
    """

    counts: np.ndarray
    matrix: np.ndarray
    overall: float
    overall_se: float
    users: np.ndarray
    users_se: np.ndarray
    producers: np.ndarray
    producers_se: np.ndarray
    area: np.ndarray
    area_se: np.ndarray


def ratio(y: np.ndarray, x: np.ndarray, strata: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified estimate of Y / X and its standard error, for every column at once.

    Args:
        y, x: (n, C) values of the n sample units.
        strata: (n,) stratum index of each unit, in [0, H).
        sizes: (H,) N_h, pixels of each stratum.

    Returns:
        (R (C,), standard error (C,)); NaN where X is 0.
    """
    sizes = np.asarray(sizes, float)
    onehot = np.eye(len(sizes))[strata]                      # (n, H)
    n_h = onehot.sum(0)

    def mean(v: np.ndarray) -> np.ndarray:                    # (H, C) stratum means
        return (onehot.T @ v) / n_h[:, None]

    big_x = sizes @ mean(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sizes @ mean(y)) / big_x
        d = y - np.nan_to_num(r) * x                          # residuals whose variance is V(R) * X^2
        ss = onehot.T @ (d - mean(d)[strata]) ** 2            # (H, C) sums of squares
        census = n_h >= sizes
        per_stratum = np.where(census[:, None], 0.0, sizes[:, None] ** 2 * ss / (n_h * (n_h - 1))[:, None])
        se = np.sqrt(per_stratum.sum(0)) / big_x
    return r, np.where(big_x > 0, se, np.nan)


def estimate(strata: np.ndarray, mapped: np.ndarray, reference: np.ndarray, sizes: np.ndarray,
             n_classes: int) -> Estimates:
    """Accuracy and area estimates from a stratified random sample (see the module docstring).

    Args:
        strata: (n,) stratum index of each labelled unit; every stratum needs 2 units or all its pixels.
        mapped, reference: (n,) map class and reference class index of each unit, in [0, K).
        sizes: (H,) pixels of each stratum.
        n_classes: K.
    """
    k = n_classes
    m, r = np.eye(k)[mapped], np.eye(k)[reference]           # (n, K) indicators
    agree = m * r
    ones = np.ones((len(strata), 1))
    cells, _ = ratio((m[:, :, None] * r[:, None, :]).reshape(len(strata), k * k), ones, strata, sizes)
    oa, oa_se = ratio(agree.sum(1, keepdims=True), ones, strata, sizes)
    users, users_se = ratio(agree, m, strata, sizes)
    producers, producers_se = ratio(agree, r, strata, sizes)
    area, area_se = ratio(r, ones, strata, sizes)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (mapped, reference), 1)
    return Estimates(counts=counts, matrix=cells.reshape(k, k), overall=float(oa[0]), overall_se=float(oa_se[0]),
                     users=users, users_se=users_se, producers=producers, producers_se=producers_se,
                     area=area, area_se=area_se)
