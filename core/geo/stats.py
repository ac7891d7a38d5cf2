"""Input statistics of the models, as plain numbers (stdlib only, so the model registry can name them without torch).

A model record names one set (``ModelRecord.stats``) and carries its ``mean``/``std``;
:func:`core.geo.normalize.preprocess` applies them.
"""
from __future__ import annotations

from .bands import S1_GRD, S2_L1C, S2_L2A, S2_SURFACE

# SSL4EO-S12 statistics (Wang et al. 2022; SoftCon and SSL4EO-S12 code), SoftCon band order.
S2C_MEAN = [1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991, 2091.74883118,
            2371.7172463, 2299.90463006, 2560.29504086, 830.06605044, 22.10351321, 2177.07172323,
            1524.06546312]
S2C_STD = [786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652, 1161.59187054,
           1274.39184232, 1248.42891965, 1345.52684884, 577.31607053, 51.15431158, 1336.09932639,
           1136.53823676]
S1_MEAN = [-12.54847273, -20.19237134]
S1_STD = [5.25697717, 5.91150917]
# SSL4EO-S12 Sentinel-2 L2A statistics (12 bands, no B10), for models trained on L2A.
S2A_MEAN = [752.40087073, 884.29673756, 1144.16202635, 1297.47289228, 1624.90992062, 2194.6423161,
            2422.21248945, 2517.76053101, 2581.64687018, 2645.51888987, 2368.51236873, 1805.06846033]
S2A_STD = [1108.02887453, 1155.15170768, 1183.6292542, 1368.11351514, 1370.265037, 1355.55390699,
           1416.51487101, 1474.78900051, 1439.3086061, 1582.28010962, 1455.52084939, 1343.48379601]

# Galileo's Sentinel-2 statistics (../shared/models/galileo_nano/README.md), bands B2..B8, B8A, B11, B12.
GALILEO_S2_MEAN = [1395.3408730676722, 1338.4026921784578, 1343.09883810357, 1543.8607982512297,
                   2186.2022069512263, 2525.0932853316694, 2410.3377187373408, 2750.2854646886753,
                   2234.911100061487, 1474.5311266077113]
GALILEO_S2_STD = [917.7041440370853, 913.2988423581528, 1092.678723527555, 1047.2206083460424,
                  1048.0101611156767, 1143.6903026819996, 1098.979177731649, 1204.472755085893,
                  1145.9774063078878, 980.2429840007796]

#: Named statistics sets: name -> (bands, mean, std). A model record names one.
STATS: dict[str, tuple[tuple[str, ...], list[float], list[float]]] = {
    "ssl4eo_s12_l1c": (S2_L1C, S2C_MEAN, S2C_STD),
    "ssl4eo_s12_l2a": (S2_L2A, S2A_MEAN, S2A_STD),
    "ssl4eo_s12_s1": (S1_GRD, S1_MEAN, S1_STD),
    "galileo_s2": (S2_SURFACE, GALILEO_S2_MEAN, GALILEO_S2_STD),
}

#: Sentinel-2 processing baseline 04.00 (from 2022-01-25) adds 1000 to L1C/L2A digital numbers.
BOA_ADD_OFFSET = 1000.0
