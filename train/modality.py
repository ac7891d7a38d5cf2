"""The three SSL4EO-S12 products SoftCon pretrains on: what the model sees of each and how it is scaled.

SSL4EO-S12 (Wang et al. 2022) stores each product in its own folder, ``<root>/<folder>/<location>/<season>/``:

- ``s2c``: Sentinel-2 L1C, 13 files ``B1.tif ... B12.tif`` (B8A too) -> the ``B13_*`` models;
- ``s2a``: Sentinel-2 L2A, 12 files (no B10, which Sen2Cor drops). SoftCon's 13-band models take L2A with
  B10 filled with raw 0 (as ``core`` does at inference), so the model still has 13 inputs; the other
  12 bands are scaled with the SSL4EO-S12 L2A statistics, B10 with the L1C ones (raw 0 -> 0.392);
- ``s1``: Sentinel-1 GRD, ``VV.tif`` and ``VH.tif`` in dB -> the ``B2_*`` models. Each image and band is
  first clamped to its own 1-99 % quantiles (SoftCon's SAR preprocessing, ``core.geo.normalize``).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.geo.bands import S1_GRD, S2_L1C
from core.geo.stats import S1_MEAN, S1_STD, S2A_MEAN, S2A_STD, S2C_MEAN, S2C_STD


@dataclass(frozen=True)
class Modality:
    name: str
    bands: tuple[str, ...]            # model input channels, in order
    files: tuple[str, ...]            # bands stored as files (the rest are filled with raw 0)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sar_quantiles: tuple[float, float] | None = None
    stats: str = "ssl4eo_s12_l1c"     # core.geo.stats.STATS name written into the export

    @property
    def optical(self) -> bool:
        return self.sar_quantiles is None


def _l2a_stats(values: list[float], l1c: list[float]) -> tuple[float, ...]:
    """12 L2A values (no B10) -> 13, with the L1C value at B10."""
    i = S2_L1C.index("B10")
    return tuple(values[:i]) + (l1c[i],) + tuple(values[i:])


MODALITIES: dict[str, Modality] = {
    "s2c": Modality("s2c", S2_L1C, S2_L1C, tuple(S2C_MEAN), tuple(S2C_STD)),
    "s2a": Modality("s2a", S2_L1C, tuple(b for b in S2_L1C if b != "B10"), _l2a_stats(S2A_MEAN, S2C_MEAN),
                    _l2a_stats(S2A_STD, S2C_STD), stats="ssl4eo_s12_l2a"),
    "s1": Modality("s1", S1_GRD, S1_GRD, tuple(S1_MEAN), tuple(S1_STD), sar_quantiles=(0.01, 0.99),
                   stats="ssl4eo_s12_s1"),
}
