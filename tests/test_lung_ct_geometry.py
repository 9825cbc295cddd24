"""Geometry stage and teacher renderer of the synthetic lung-cancer chest CT."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from generators.chest.lung_ct import (
    CTGrid,
    Label,
    draw_anatomy,
    label_volume,
    lesion_measurement,
    place_lesions,
    render_hu,
)

SMALL = CTGrid(rows=128, columns=128, n_slices=24, pixel_spacing_mm=2.8, slice_spacing_mm=5.0)


@pytest.fixture(scope="module")
def patient():
    rng = np.random.default_rng(7)
    anatomy = draw_anatomy(rng, SMALL, "F")
    sites = place_lesions(anatomy, SMALL, 3, rng)
    return anatomy, sites


def test_grid_position_and_index_round_trip():
    grid = CTGrid(rows=64, columns=80, n_slices=10, pixel_spacing_mm=0.75, slice_spacing_mm=2.5)
    assert grid.z_top_mm == 0.0
    assert grid.position_mm(0, 0, 0)[2] == 0.0
    x0, y0, _ = grid.position_mm(0, 0, 0)
    x1, y1, _ = grid.position_mm(0, 0, 1)
    assert x1 - x0 == pytest.approx(0.75) and y1 == y0  # columns run to patient left
    _, y2, z2 = grid.position_mm(1, 1, 0)
    assert y2 - y0 == pytest.approx(0.75) and z2 == pytest.approx(-2.5)  # rows posterior, slices inferior
    # The field of view is centred on x = y = 0.
    xc, yc, _ = grid.position_mm(0, (grid.rows - 1) / 2, (grid.columns - 1) / 2)
    assert (xc, yc) == (pytest.approx(0.0), pytest.approx(0.0))
    for k, r, c in [(0, 0, 0), (9, 63, 79), (3.25, 10.5, 40.0)]:
        assert grid.index_of(*grid.position_mm(k, r, c)) == pytest.approx((k, r, c))
    ks, rs, cs = np.array([0.0, 4.0]), np.array([1.0, 2.0]), np.array([5.0, 6.0])
    np.testing.assert_allclose(grid.index_of(*grid.position_mm(ks, rs, cs)), (ks, rs, cs))


def test_grid_rejects_bad_sizes():
    with pytest.raises(ValueError):
        CTGrid(rows=0, columns=10, n_slices=1, pixel_spacing_mm=1.0, slice_spacing_mm=1.0)
    with pytest.raises(ValueError):
        CTGrid(rows=10, columns=10, n_slices=1, pixel_spacing_mm=-1.0, slice_spacing_mm=1.0)


def test_draw_anatomy_checks_sex():
    with pytest.raises(ValueError, match="sex"):
        draw_anatomy(np.random.default_rng(0), SMALL, "X")


def test_same_seed_same_bytes_other_seed_differs():
    def visit(seed):
        rng = np.random.default_rng(seed)
        anatomy = draw_anatomy(rng, SMALL, "M")
        sites = place_lesions(anatomy, SMALL, 1, rng)
        labels = label_volume(anatomy, SMALL, [(sites[0], 20.0)])
        return anatomy, labels, render_hu(labels, SMALL, np.random.default_rng(seed + 100))

    a1, l1, h1 = visit(3)
    a2, l2, h2 = visit(3)
    assert a1 == a2
    assert l1.tobytes() == l2.tobytes()
    assert h1.dtype == np.int16 and h1.shape == SMALL.shape
    assert h1.tobytes() == h2.tobytes()
    _, l3, h3 = visit(4)
    assert l1.tobytes() != l3.tobytes()
    assert h1.tobytes() != h3.tobytes()
    # The teacher's noise alone also depends on its generator.
    assert render_hu(l1, SMALL, np.random.default_rng(1)).tobytes() != h1.tobytes()


def test_label_volume_shape_and_anatomy(patient):
    anatomy, _ = patient
    labels = label_volume(anatomy, SMALL, [])
    assert labels.dtype == np.uint8 and labels.shape == SMALL.shape
    present = set(np.unique(labels).tolist())
    for lab in (Label.AIR, Label.FAT, Label.MUSCLE, Label.LUNG, Label.VESSEL, Label.HEART, Label.BONE, Label.RIB, Label.TABLE):
        assert lab in present, lab.name
    assert not (labels >= Label.TUMOUR).any()
    # Right lung (image left, x < 0) is larger than the left one, which makes room for the heart.
    lung = labels == Label.LUNG
    half = SMALL.columns // 2
    assert lung[:, :, :half].sum() > lung[:, :, half:].sum()
    # The body fits the field of view and the table lies below (posterior to) it.
    assert (labels[:, :, 0] == Label.AIR).all() and (labels[:, 0, :] == Label.AIR).all()
    rows_table = np.nonzero((labels == Label.TABLE).any(axis=(0, 2)))[0]
    rows_body = np.nonzero(np.isin(labels, [Label.FAT, Label.MUSCLE, Label.SOFT_TISSUE]).any(axis=(0, 2)))[0]
    assert rows_table.max() > rows_body.max()


def test_place_lesions_counts(patient):
    anatomy, _ = patient
    assert place_lesions(anatomy, SMALL, 0, np.random.default_rng(0)) == []
    with pytest.raises(ValueError):
        place_lesions(anatomy, SMALL, -1, np.random.default_rng(0))


def test_sites_inside_lung_and_apart(patient):
    anatomy, sites = patient
    assert len(sites) == 3
    base = label_volume(anatomy, SMALL, [])
    for site in sites:
        assert site.lung in ("right", "left")
        assert site.lobe.startswith(site.lung) and site.lobe.endswith("lobe")
        k, r, c = (int(round(v)) for v in SMALL.index_of(*site.centre_mm))
        assert base[k, r, c] in (Label.LUNG, Label.VESSEL)
    for a, b in itertools.combinations(sites, 2):
        assert np.linalg.norm(np.subtract(a.centre_mm, b.centre_mm)) >= 25.0


def test_lesion_diameters_match_and_lie_in_lung(patient):
    anatomy, sites = patient
    diameters = [30.0, 14.0, 45.0]
    labels = label_volume(anatomy, SMALL, list(zip(sites, diameters)))
    base = label_volume(anatomy, SMALL, [])
    ps = SMALL.pixel_spacing_mm
    for i, d in enumerate(diameters):
        m = lesion_measurement(labels, SMALL, i)
        assert m is not None
        assert abs(m.diameter_mm - d) <= ps, (i, m, d)
        (r0, c0), (r1, c1) = m.points
        assert labels[m.slice, r0, c0] == Label.TUMOUR + i == labels[m.slice, r1, c1]
        assert np.hypot(r1 - r0, c1 - c0) * ps == pytest.approx(m.diameter_mm)
        # Lesions only replace lung parenchyma and pulmonary vessels.
        under = base[labels == Label.TUMOUR + i]
        assert np.isin(under, [Label.LUNG, Label.VESSEL]).all()
    assert lesion_measurement(labels, SMALL, 3) is None


def test_followup_same_anatomy_and_shape_scaled(patient):
    anatomy, sites = patient
    first = label_volume(anatomy, SMALL, [(sites[0], 20.0), (sites[1], 0.0), (sites[2], 12.0)])
    later = label_volume(anatomy, SMALL, [(sites[0], 36.0), (sites[1], 10.0), (sites[2], 0.0)])
    # Diameter 0: no lesion voxels at all.
    assert not (first == Label.TUMOUR + 1).any()
    assert not (later == Label.TUMOUR + 2).any()
    outside = (first < Label.TUMOUR) & (later < Label.TUMOUR)
    np.testing.assert_array_equal(first[outside], later[outside])
    # The same site grows as the same shape, scaled about its centre.
    small, big = first == Label.TUMOUR, later == Label.TUMOUR
    assert small.any() and big.sum() > small.sum()
    assert big[small].all()


def test_lesion_measurement_on_a_drawn_disc():
    grid = CTGrid(rows=40, columns=40, n_slices=3, pixel_spacing_mm=1.0, slice_spacing_mm=2.0)
    labels = np.zeros(grid.shape, np.uint8)
    labels[1, 10, 5:26] = Label.TUMOUR + 2  # a 21-pixel bar: 20 mm between end centres
    labels[0, 10, 8:12] = Label.TUMOUR + 2
    m = lesion_measurement(labels, grid, 2)
    assert m.slice == 1 and m.diameter_mm == pytest.approx(20.0)
    assert sorted(m.points) == [(10, 5), (10, 25)]
    assert lesion_measurement(labels, grid, 0) is None


def test_rendered_hu_per_tissue():
    """Mean HU of voxels away from tissue boundaries, on a full-resolution slab."""
    grid = CTGrid(rows=512, columns=512, n_slices=8, pixel_spacing_mm=0.7, slice_spacing_mm=10.0)
    rng = np.random.default_rng(11)
    anatomy = draw_anatomy(rng, grid, "M")
    sites = place_lesions(anatomy, grid, 1, rng)
    labels = label_volume(anatomy, grid, [(sites[0], 30.0)])
    hu = render_hu(labels, grid, np.random.default_rng(12))
    assert hu.dtype == np.int16 and hu.min() >= -1024 and hu.max() <= 3071
    expected = {
        Label.AIR: (-1024, -950),
        Label.LUNG: (-900, -700),
        Label.AIRWAY: (-1024, -900),
        Label.FAT: (-120, -60),
        Label.MUSCLE: (0, 80),
        Label.SOFT_TISSUE: (0, 80),
        Label.MEDIASTINUM: (0, 80),
        Label.HEART: (0, 80),
        Label.VESSEL: (0, 80),
        Label.BONE: (300, 3071),
        Label.RIB: (300, 3071),
        Label.STERNUM: (300, 3071),
        Label.TUMOUR: (20, 60),
        Label.TABLE: (-200, 100),
    }
    checked = []
    for lab, (lo, hi) in expected.items():
        mask = labels == lab
        core = ndimage.binary_erosion(mask, structure=np.ones((3, 5, 5), bool))
        if core.sum() < 30:  # thin in z: erode in plane only
            core = ndimage.binary_erosion(mask, structure=np.ones((1, 5, 5), bool))
        if core.sum() < 30:
            continue
        mean = float(hu[core].mean())
        assert lo <= mean <= hi, (lab.name, mean)
        checked.append(lab)
    for lab in (
        Label.AIR,
        Label.LUNG,
        Label.FAT,
        Label.MUSCLE,
        Label.HEART,
        Label.VESSEL,
        Label.BONE,
        Label.RIB,
        Label.TUMOUR,
        Label.TABLE,
    ):
        assert lab in checked, lab.name
    # Noise: soft tissue varies by roughly 10-20 HU, the air outside the body less.
    muscle = ndimage.binary_erosion(labels == Label.MUSCLE, structure=np.ones((3, 5, 5), bool))
    air = ndimage.binary_erosion(labels == Label.AIR, structure=np.ones((3, 5, 5), bool))
    assert 8.0 <= hu[muscle].std() <= 30.0
    assert hu[air].std() < hu[muscle].std()


def test_a_visit_made_slab_by_slab_in_any_order_equals_the_whole_volume(patient):
    """The first image of a series needs only its slab: slices, tubes and lesions made per slice
    range (lesions reach across slabs) give the whole volume's bytes, whatever the order."""
    from generators.chest.lung_ct.geometry.lesions import draw_lesion
    from generators.chest.lung_ct.geometry.volume import VisitLabels, _anatomy, anatomy_volume

    anatomy, sites = patient
    lesions = [(sites[0], 30.0), (sites[1], 12.0), (sites[2], 0.0)]
    _anatomy.cache_clear()
    whole = label_volume(anatomy, SMALL, lesions)
    assert (whole >= Label.TUMOUR).any()
    # Lesions drawn on their own windows of the anatomy give what drawing them one after the
    # other on the whole anatomy volume gives.
    reference = anatomy_volume(anatomy, SMALL).copy()
    for i, (site, diameter) in enumerate(lesions):
        if diameter > 0:
            draw_lesion(reference, anatomy, SMALL, site, diameter, int(Label.TUMOUR) + i)
    np.testing.assert_array_equal(whole, reference)
    for seed in (0, 1):
        _anatomy.cache_clear()  # the anatomy is made per range too, not taken from the run above
        visit = VisitLabels(anatomy, SMALL, lesions)
        starts = np.random.default_rng(seed).permutation(range(0, SMALL.n_slices, 3))
        for start in starts:
            np.testing.assert_array_equal(visit.slices(int(start), int(start) + 3), whole[start : start + 3])
        np.testing.assert_array_equal(visit.whole(), whole)


def test_a_window_of_the_anatomy_is_labelled_as_the_whole_volume_is(patient):
    """A lesion reads its box of the anatomy labelled on its own (rows and columns too)."""
    from generators.chest.lung_ct.geometry.volume import _anatomy, anatomy_volume

    anatomy, _ = patient
    _anatomy.cache_clear()
    whole = anatomy_volume(anatomy, SMALL).copy()
    _anatomy.cache_clear()
    slices = _anatomy(anatomy, SMALL)
    rng = np.random.default_rng(3)
    for _ in range(6):
        k0, r0, c0 = (int(rng.integers(0, n - 2)) for n in SMALL.shape)
        k1, r1, c1 = (min(n, a + int(rng.integers(1, 80))) for n, a in zip(SMALL.shape, (k0, r0, c0)))
        box = (slice(k0, k1), slice(r0, r1), slice(c0, c1))
        np.testing.assert_array_equal(slices.window(box), whole[box])
    # A visit's lesions alone label a few percent of the slices' voxels, not whole slices.
    assert not slices._done.any()


def test_the_lobulation_bound_holds_everywhere_and_is_tighter_than_the_sum_of_the_bumps():
    from generators.chest.lung_ct.geometry.lesions import draw_shape, max_lobulation

    rng = np.random.default_rng(7)
    for _ in range(20):
        shape = draw_shape(rng)
        directions = np.concatenate([rng.normal(size=(50_000, 3)), np.asarray(shape.bump_directions)])
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        f = np.ones(len(directions))
        for d, h, k in zip(shape.bump_directions, shape.bump_heights, shape.bump_sharpness):
            f += h * np.maximum(directions @ np.asarray(d), 0.0) ** k
        assert f.max() <= max_lobulation(shape) < 1.0 + sum(shape.bump_heights)
