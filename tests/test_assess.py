"""core.assess: the published examples rebuilt as real files (Olofsson et al. 2014, Stehman 2014), the sample
design (eq. 13, allocation, drawing), and the bad input the issue lists."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyogrio.raw import read, write
from rasterio.transform import from_origin
from rasterio.warp import transform as warp

from core.assess.accuracy import assess_accuracy
from core.assess.cli import main
from core.assess.estimation import estimate, Z95
from core.assess.reference import pick_layer
from core.assess.sampling import allocate, create_sample, sample_size
from core.errors import SoftConError

UTM = "EPSG:32618"
OLOFSSON_NAMES = ["Deforestation", "Forest gain", "Stable forest", "Stable non-forest"]
#: Olofsson et al. (2014), Table 8: sample counts, rows map class, columns reference class.
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]


def write_map(path: Path, data: np.ndarray, res: float, names=None, values=None, nodata=0, crs=UTM) -> Path:
    """A tiled, compressed class GeoTIFF, with the CLASS_NAMES / CLASS_VALUES tags of core.classify if given."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, nodata=nodata, crs=crs, transform=from_origin(400_000, 4_300_000, res, res),
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(data, 1)
        if names is not None:
            dst.update_tags(CLASS_NAMES=json.dumps(names), CLASS_VALUES=json.dumps(values))
    return path


def pixel_centres(map_path: Path, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(map_path) as ds:
        return ds.transform @ (np.asarray(cols) + 0.5, np.asarray(rows) + 0.5)


def write_points(path: Path, x, y, fields: dict, crs: str = UTM, geometries=None) -> Path:
    geoms = geometries if geometries is not None else shapely.points(np.column_stack([x, y]))
    write(path, shapely.to_wkb(geoms), [np.asarray(v, dtype=object) for v in fields.values()], list(fields),
          geometry_type="Polygon" if geometries is not None else "Point", crs=crs, driver="GPKG", layer="points")
    return path


def test_published_olofsson_example_from_real_files(tmp_path):
    """Olofsson et al. (2014), section 5: a 30 m map of exactly 200,000 / 150,000 / 3,200,000 / 6,450,000 pixels
    (codes 10..40, names in the tags) and 640 points (in EPSG:4326, reprojected) whose map/reference pairs are the
    published error matrix; every published figure, to the published precision, through the command line."""
    rows_per_class = [p // 2500 for p in OLOFSSON_PIXELS]                  # 80, 60, 1280, 2580 rows of 2500 px
    values = [10, 20, 30, 40]
    data = np.repeat(np.array(values, np.uint8), rows_per_class)[:, None].repeat(2500, 1)
    map_path = write_map(tmp_path / "change.tif", data, 30.0, OLOFSSON_NAMES, values)
    assert map_path.stat().st_size < 200_000                               # 10 M pixels, compressed
    first_row = np.cumsum([0] + rows_per_class)
    rows, cols, ref, strata = [], [], [], []
    for i in range(4):
        pairs = [j for j in range(4) for _ in range(OLOFSSON_COUNTS[i, j])]
        for k, j in enumerate(pairs):                                      # distinct pixels inside map class i
            rows.append(first_row[i] + k // 50)
            cols.append(k % 50 * 37)
            ref.append(OLOFSSON_NAMES[j])
            strata.append(OLOFSSON_NAMES[i])
    x, y = pixel_centres(map_path, rows, cols)
    lon, lat = warp(UTM, "EPSG:4326", x, y)
    sample = write_points(tmp_path / "sample.gpkg", lon, lat, {"reference": ref, "stratum": strata}, crs="EPSG:4326")

    assert main(["estimate", str(map_path), str(sample), "--out-dir", str(tmp_path / "out")]) == 0
    rep = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert rep["estimator"] == "olofsson2014"
    assert [s["pixels"] for s in rep["strata"]] == OLOFSSON_PIXELS
    assert rep["error_matrix"]["counts"] == OLOFSSON_COUNTS.tolist()
    oa = rep["overall_accuracy"]
    assert round(oa["estimate"], 3) == 0.947 and round(Z95 * oa["se"], 2) == 0.02
    cls = {c["name"]: c for c in rep["classes"]}
    published = {  # user's, producer's (each +- 95 %), area in ha +- 95 %
        "Deforestation": (0.88, 0.07, 0.75, 0.21, 21_158, 6_158),
        "Forest gain": (0.73, 0.10, 0.85, 0.25, 11_686, 3_756),
        "Stable forest": (0.93, 0.04, 0.93, 0.03, 285_770, 15_510),
        "Stable non-forest": (0.96, 0.02, 0.96, 0.02, 581_386, 16_282),
    }
    for name, (ua, ua_ci, pa, pa_ci, area, area_ci) in published.items():
        c = cls[name]
        assert round(c["users_accuracy"]["estimate"], 2) == ua and round(Z95 * c["users_accuracy"]["se"], 2) == ua_ci
        assert round(c["producers_accuracy"]["estimate"], 2) == pa
        assert round(Z95 * c["producers_accuracy"]["se"], 2) == pa_ci
        assert round(c["area_ha"]["estimate"]) == area and round(Z95 * c["area_ha"]["se"]) == area_ci
    # Table 9: the error matrix in proportions of area, and the CSV holds the same
    table9 = [[0.0176, 0, 0.0013, 0.0011], [0, 0.0110, 0.0016, 0.0024], [0.0019, 0, 0.2967, 0.0213],
              [0.0040, 0.0020, 0.0179, 0.6212]]
    assert np.round(rep["error_matrix"]["area_proportions"], 4).tolist() == table9
    with open(tmp_path / "out" / "error_matrix.csv") as f:
        table = list(csv.reader(f))
    assert table[0] == ["map \\ reference"] + OLOFSSON_NAMES + ["total"]
    assert np.allclose(np.array(table[1:5])[:, 1:5].astype(float), rep["error_matrix"]["area_proportions"], atol=1e-6)
    html = (tmp_path / "out" / "accuracy.html").read_text()
    assert "21,158 ± 6,158" in html and "0.947 ± 0.018" in html


def test_published_stehman_example_when_strata_differ_from_the_map(tmp_path):
    """Stehman (2014), section 4: strata 1-4 of 40,000 / 30,000 / 20,000 / 10,000 pixels, 10 points each, map
    classes A-D that cut across them; the sample file records strata and their sizes, as the sampler writes them."""
    strata = ["1"] * 10 + ["2"] * 10 + ["3"] * 10 + ["4"] * 10
    mapped = list("AAAAAAABBB" "ABBBBBBBBB" "BBCCCCCCBB" "DDDDDDDDDD")
    reference = list("AAAAACBABC" "ABBBBBAABB" "CCCCCDDBBA" "DDDDDDDCCB")
    data = np.repeat(np.array([1, 2, 3, 4], np.uint8), 25)[:, None].repeat(1000, 1)  # 100 x 1000 px, 4 classes
    map_path = write_map(tmp_path / "map.tif", data, 10.0, list("ABCD"), [1, 2, 3, 4])
    rows = [25 * "ABCD".index(m) + k // 40 for k, m in enumerate(mapped)]
    x, y = pixel_centres(map_path, rows, [k % 40 * 20 for k in range(40)])
    sizes = {"1": 40_000, "2": 30_000, "3": 20_000, "4": 10_000}
    fields = {"ref": reference, "stratum": strata, "stratum_pixels": [sizes[s] for s in strata]}
    sample = write_points(tmp_path / "s.gpkg", x, y, fields)
    rep = assess_accuracy(map_path, sample, tmp_path / "out", reference_field="ref").report
    assert rep["estimator"] == "stehman2014" and [s["pixels"] for s in rep["strata"]] == list(sizes.values())
    cls = {c["name"]: c for c in rep["classes"]}
    # the paper's figures (estimate, standard error), to its three decimals

    def rounded(fig):
        return round(fig["estimate"], 3), round(fig["se"], 3)

    assert rounded(cls["A"]["area_proportion"]) == (0.35, 0.082)
    assert rounded(cls["C"]["area_proportion"]) == (0.2, 0.064)
    assert rounded(rep["overall_accuracy"]) == (0.63, 0.085)
    assert rounded(cls["B"]["users_accuracy"]) == (0.574, 0.125)
    assert rounded(cls["B"]["producers_accuracy"]) == (0.794, 0.117)
    assert round(rep["error_matrix"]["area_proportions"][1][2], 3) == 0.08


def test_stratified_estimator_reduces_to_simple_random_sampling():
    """With one stratum, OA is the sample's agreement and its SE the binomial sqrt(p (1 - p) / (n - 1))."""
    rng = np.random.default_rng(1)
    m = rng.integers(0, 3, 200)
    r = np.where(rng.random(200) < 0.8, m, rng.integers(0, 3, 200))
    e = estimate(np.zeros(200, np.int64), m, r, np.array([10**9]), 3)
    p = (m == r).mean()
    assert e.overall == pytest.approx(p) and e.overall_se == pytest.approx(np.sqrt(p * (1 - p) / 199))
    assert e.area == pytest.approx(np.bincount(r, minlength=3) / 200)


def test_intervals_are_clipped_to_what_the_figure_can_be():
    from core.assess.report import figure

    assert figure(0.01, 0.02, 100.0) == {"estimate": 1.0, "se": 2.0, "ci95": [0.0, pytest.approx(4.92)]}
    assert figure(0.99, 0.02)["ci95"] == [pytest.approx(0.9508), 1.0]
    assert figure(float("nan"), float("nan")) == {"estimate": None, "se": None, "ci95": None}


def test_sample_size_is_olofsson_eq13():
    """The paper's example: W = 0.02, 0.015, 0.32, 0.645; U = 0.7, 0.6, 0.9, 0.95; S(O) = 0.01 gives n = 641."""
    assert sample_size(np.array([0.02, 0.015, 0.32, 0.645]), np.array([0.7, 0.6, 0.9, 0.95]), 0.01) == 641
    with pytest.raises(SoftConError, match="between 0 and 1"):
        sample_size(np.array([1.0]), np.array([1.0]), 0.01)


def test_allocation_gives_the_minimum_then_proportional():
    counts = np.array([600_000, 300_000, 85_000, 15_000, 0, 7])
    a = allocate(400, counts, 20)
    assert a.sum() == 400 and a[4] == 0 and a[5] == 7                    # an absent class none, a tiny one all
    assert a[3] == 20                                                  # 1.5 % of the area: 6 points, raised to 20
    assert a[:3].tolist() == [227, 114, 32]                            # the other 373 in proportion to area
    assert allocate(10**7, counts).tolist() == counts.tolist()          # more points than pixels: every pixel
    with pytest.raises(SoftConError, match="at least 87"):
        allocate(50, counts, 20)


@pytest.fixture()
def rare_class_map(tmp_path) -> Path:
    """600 x 1000 px at 10 m, codes 10/20/30/40 (not 1..n), built-up exactly 1.5 % of the mapped area, nodata
    along the top and in a hole."""
    a = np.full((600, 1000), 10, np.uint8)
    a[:, 500:] = 20
    a[480:, :250] = 30
    a[5:95, :99] = 40                                                  # 8,910 px = 1.5 % of 594,000
    a[:5] = 0
    a[300:310, 300:400] = 0
    return write_map(tmp_path / "map.tif", a, 10.0, ["water", "forest", "crop", "built-up"], [10, 20, 30, 40])


def read_sample(path: Path) -> dict:
    meta, _, wkb, values = read(path, layer=pick_layer(path, None))
    out = dict(zip(meta["fields"], values))
    out["xy"] = shapely.get_coordinates(shapely.from_wkb(wkb))
    out["crs"] = meta["crs"]
    return out


def test_sample_of_400_gives_every_class_at_least_20_points(rare_class_map, tmp_path):
    with rasterio.open(rare_class_map) as ds:
        data = ds.read(1)
    assert (data == 40).sum() / (data > 0).sum() == 0.015
    assert main(["sample", str(rare_class_map), "--size", "400", "--out-dir", str(tmp_path / "s")]) == 0
    s = read_sample(tmp_path / "s" / "validation_sample.gpkg")
    assert len(s["sample_id"]) == 400 and s["crs"] == UTM
    names, n = np.unique(s["map_class"], return_counts=True)
    assert dict(zip(names, n)) == {"water": 167, "forest": 193, "crop": 20, "built-up": 20}
    # one point per pixel centre, on a pixel of the class it records; no pixel twice; nothing labelled yet
    with rasterio.open(rare_class_map) as ds:
        c, r = ~ds.transform @ (s["xy"][:, 0], s["xy"][:, 1])
    assert np.allclose(c % 1, 0.5) and np.allclose(r % 1, 0.5)
    assert (data[r.astype(int), c.astype(int)] == s["map_value"]).all()
    assert len({(int(a), int(b)) for a, b in zip(r, c)}) == 400
    assert all(v is None for v in s["reference"]) and (s["stratum"] == s["map_class"]).all()
    assert dict(zip(s["stratum"], s["stratum_pixels"]))["built-up"] == (data == 40).sum()
    assert not (np.diff(s["map_value"]) == 0).all()                     # labelling order is random, not by class
    # reproducible: the same seed draws the same points, another seed others
    create_sample(rare_class_map, tmp_path / "again.gpkg", size=400)
    assert np.array_equal(read_sample(tmp_path / "again.gpkg")["xy"], s["xy"])
    create_sample(rare_class_map, tmp_path / "other.gpkg", size=400, seed=1)
    assert not np.array_equal(read_sample(tmp_path / "other.gpkg")["xy"], s["xy"])


def test_default_size_follows_eq13(rare_class_map, tmp_path):
    res = create_sample(rare_class_map, tmp_path / "s.gpkg", expected_ua={"built-up": 0.7}, target_se=0.02)
    with rasterio.open(rare_class_map) as ds:
        counts = np.bincount(ds.read(1).ravel(), minlength=41)[[10, 20, 30, 40]]
    u = np.array([0.85, 0.85, 0.85, 0.7])
    expected = sample_size(counts / counts.sum(), u, 0.02, int(counts.sum()))
    assert res.size == res.design["size_from_eq13"] == expected and res.design["expected_ua"]["built-up"] == 0.7
    assert 300 < expected < 330                                        # (sum W S / 0.02)^2 = 316 for these shares


def relabelled(s: dict, reference: list, path: Path) -> Path:
    """The points of sample ``s`` with its strata and the given reference labels."""
    return write_points(path, s["xy"][:, 0], s["xy"][:, 1], {"reference": reference, "stratum": s["stratum"]})


def labelled_sample(map_path: Path, sample_path: Path, n_wrong: int = 0, unlabelled: int = 0) -> Path:
    """``sample_path`` with ``reference`` = the map class (``n_wrong`` points: the next class), the last
    ``unlabelled`` points left empty."""
    s = read_sample(sample_path)
    names = ["water", "forest", "crop", "built-up"]
    ref = [names[(names.index(m) + (i < n_wrong)) % 4] for i, m in enumerate(s["map_class"])]
    ref = ref[: len(ref) - unlabelled] + [None] * unlabelled
    fields = {k: s[k] for k in ("map_class", "stratum", "stratum_pixels")}
    return write_points(sample_path.with_name("labelled.gpkg"), s["xy"][:, 0], s["xy"][:, 1],
                        {"reference": ref, **fields})


def test_unlabelled_points_are_counted_and_a_perfect_map_scores_one(rare_class_map, tmp_path):
    create_sample(rare_class_map, tmp_path / "s.gpkg", size=120)
    sample = labelled_sample(rare_class_map, tmp_path / "s.gpkg", unlabelled=3)
    rep = assess_accuracy(rare_class_map, sample, tmp_path / "out").report
    assert rep["points"] == {"read": 120, "used": 117, "skipped": {"unlabelled": 3}}
    assert rep["overall_accuracy"]["estimate"] == 1.0 and "3 unlabelled point(s) skipped." in rep["warnings"]
    assert rep["overall_accuracy"]["ci95"] == [1.0, 1.0]
    mapped = {c["name"]: c["mapped_area_ha"] for c in rep["classes"]}
    assert {c["name"]: c["area_ha"]["estimate"] for c in rep["classes"]} == pytest.approx(mapped)


def test_a_map_without_class_names_uses_its_codes(tmp_path):
    data = np.repeat(np.array([3, 7], np.uint8), 30)[:, None].repeat(40, 1)
    map_path = write_map(tmp_path / "codes.tif", data, 10.0)
    res = create_sample(map_path, tmp_path / "s.gpkg", size=40, min_per_class=5)
    assert res.allocation == {"3": 20, "7": 20}
    s = read_sample(tmp_path / "s.gpkg")
    first_3 = list(s["map_class"]).index("3")
    ref = ["7" if i == first_3 else m for i, m in enumerate(s["map_class"])]  # labels are codes here
    sample = relabelled(s, ref, tmp_path / "l.gpkg")
    rep = assess_accuracy(map_path, sample, tmp_path / "out").report
    assert [c["name"] for c in rep["classes"]] == ["3", "7"] and rep["error_matrix"]["counts"] == [[19, 1], [0, 20]]


def test_labels_that_are_not_map_classes_are_one_error_and_nothing_is_written(rare_class_map, tmp_path):
    create_sample(rare_class_map, tmp_path / "s.gpkg", size=100)
    s = read_sample(tmp_path / "s.gpkg")
    ref = ["Water", "cloud", "forest", "20", "urban", "cloud"] + list(s["map_class"][6:])  # case and codes are fine
    sample = relabelled(s, ref, tmp_path / "l.gpkg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "accuracy.json").write_text("earlier")
    with pytest.raises(SoftConError) as err:
        assess_accuracy(rare_class_map, sample, out)
    msg = str(err.value)
    assert "'cloud', 'urban'" in msg and "water, forest, crop, built-up" in msg
    assert [p.name for p in out.iterdir()] == ["accuracy.json"] and (out / "accuracy.json").read_text() == "earlier"


def test_a_stratum_with_fewer_than_two_labelled_points_is_an_error(rare_class_map, tmp_path):
    create_sample(rare_class_map, tmp_path / "s.gpkg", size=100)
    s = read_sample(tmp_path / "s.gpkg")
    keep = np.ones(100, bool)
    keep[np.nonzero(s["map_class"] == "built-up")[0][1:]] = False         # one labelled built-up point left
    ref = [m if k else None for m, k in zip(s["map_class"], keep)]
    sample = relabelled(s, ref, tmp_path / "l.gpkg")
    with pytest.raises(SoftConError, match=r"fewer than 2 labelled points on the map: 'built-up' \(1\).*19 points are "
                                           r"still unlabelled"):
        assess_accuracy(rare_class_map, sample, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_points_outside_the_map_or_on_nodata_are_reported_and_left_out(rare_class_map, tmp_path):
    create_sample(rare_class_map, tmp_path / "s.gpkg", size=100)
    s = read_sample(tmp_path / "s.gpkg")
    x0, y0 = pixel_centres(rare_class_map, [305, 0], [350, 10])         # on the nodata hole and the nodata rows
    xy = np.vstack([s["xy"], [[x0[0], y0[0]], [x0[1], y0[1]], [100.0, 200.0]]])
    ref = list(s["map_class"]) + ["water"] * 3
    sample = write_points(tmp_path / "l.gpkg", xy[:, 0], xy[:, 1],
                          {"reference": ref, "stratum": list(s["stratum"]) + ["water"] * 3})
    rep = assess_accuracy(rare_class_map, sample, tmp_path / "out").report
    assert rep["points"] == {"read": 103, "used": 100, "skipped": {"outside the map": 1, "on nodata": 2}}
    for c in rep["classes"]:                                           # intervals clipped to what areas can be
        lo, hi = c["area_ha"]["ci95"]
        assert 0 <= lo <= c["area_ha"]["estimate"] <= hi <= rep["strata_area_ha"]
    assert any("1 outside the map, 2 on nodata" in w for w in rep["warnings"])


def test_polygons_are_refused(rare_class_map, tmp_path):
    poly = shapely.box(400_100, 4_299_000, 400_200, 4_299_100)
    sample = write_points(tmp_path / "p.gpkg", None, None, {"reference": ["water"]}, geometries=np.array([poly]))
    with pytest.raises(SoftConError, match="other than points"):
        assess_accuracy(rare_class_map, sample, tmp_path / "out")


def test_a_sample_of_an_earlier_map_is_assessed_with_its_own_strata(rare_class_map, tmp_path):
    """The map changed after sampling: the strata (old classes, old pixel counts) differ from the new map's classes,
    so the estimate is Stehman's with the recorded strata; without recorded sizes it is a clear error."""
    create_sample(rare_class_map, tmp_path / "s.gpkg", size=100)
    sample = labelled_sample(rare_class_map, tmp_path / "s.gpkg", n_wrong=10)
    with rasterio.open(rare_class_map) as ds:
        data = ds.read(1)
    data[data == 30] = 20                                                # the new map merged crop into forest
    new_map = write_map(tmp_path / "new.tif", data, 10.0, ["water", "forest", "crop", "built-up"], [10, 20, 30, 40])
    rep = assess_accuracy(new_map, sample, tmp_path / "out").report
    assert rep["estimator"] == "stehman2014"
    assert [s["name"] for s in rep["strata"]] == ["built-up", "crop", "forest", "water"]
    s = read_sample(sample)
    names = ["water", "forest", "crop", "built-up"]
    strata_names = rep["strata"]
    sizes = np.array([st["pixels"] for st in strata_names])
    h = np.array([[st["name"] for st in strata_names].index(v) for v in s["stratum"]])
    m = np.array([names.index("forest" if v == "crop" else v) for v in s["map_class"]])
    r = np.array([names.index(v) for v in s["reference"]])
    e = estimate(h, m, r, sizes, 4)
    assert rep["overall_accuracy"]["estimate"] == pytest.approx(e.overall)
    assert rep["overall_accuracy"]["se"] == pytest.approx(e.overall_se)
    # the same sample without its stratum sizes cannot be assessed against the new map
    bare = write_points(tmp_path / "bare.gpkg", s["xy"][:, 0], s["xy"][:, 1],
                        {"reference": s["reference"], "stratum": s["stratum"]})
    with pytest.raises(SoftConError, match="stratum_pixels"):
        assess_accuracy(new_map, bare, tmp_path / "out2")


def test_a_sample_without_strata_is_one_stratum(rare_class_map, tmp_path):
    create_sample(rare_class_map, tmp_path / "s.gpkg", size=100)
    s = read_sample(tmp_path / "s.gpkg")
    sample = write_points(tmp_path / "l.gpkg", s["xy"][:, 0], s["xy"][:, 1], {"reference": s["map_class"]})
    rep = assess_accuracy(rare_class_map, sample, tmp_path / "out").report
    assert rep["estimator"] == "stehman2014" and rep["strata"][0]["name"] == "whole map"
    assert rep["strata"][0]["pixels"] == sum(c["mapped_pixels"] for c in rep["classes"])
    assert any("Points placed by hand are not" in w for w in rep["warnings"])


def test_cli_errors_are_one_line(rare_class_map, tmp_path, capsys):
    assert main(["sample", str(rare_class_map), "--size", "30", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: A sample of 30 points cannot give each of the 4 mapped classes 20 "
                                           "points; ask for at least 80")
    assert "Traceback" not in err and not list(tmp_path.glob("*.gpkg"))
    assert main(["estimate", str(rare_class_map), str(tmp_path / "missing.gpkg"), "--out-dir", str(tmp_path)]) == 2
    assert "Validation sample file" in capsys.readouterr().err
