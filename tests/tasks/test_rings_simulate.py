"""The vectorised renderer reproduces the tutorial's PIL procedure pixel for pixel, and its distribution."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from astrobench.tasks.rings import (
    draw_parameters,
    load_rings,
    render_rings,
    simulate_ring_images,
)
from astrobench.tasks.rings.simulate import N_ANGLES, render_ring_reference_pil


@pytest.mark.parametrize("mode,max_rings", [("single", 1), ("n_ring", 5)])
def test_renderer_matches_pil_pixel_for_pixel(mode, max_rings):
    rng = np.random.default_rng(42)
    p = draw_parameters(150, mode, max_rings, 28, rng)
    radii = p.radius[..., None] + rng.uniform(-1, 1, p.deformation.shape + (N_ANGLES,)) * p.deformation[..., None]
    ours = render_rings(p.centers, radii, p.thickness, 28, p.present)
    for i in range(len(ours)):
        ref = np.zeros((28, 28), np.uint8)
        for j in np.flatnonzero(p.present[i]):
            ref = np.maximum(ref, render_ring_reference_pil(28, p.centers[i, j], radii[i, j], p.thickness[i, j]))
        np.testing.assert_array_equal(ours[i], ref // 255, err_msg=f"image {i}")


def test_renderer_matches_pil_for_rings_leaving_the_image_and_thick_ellipses():
    rng = np.random.default_rng(0)
    centers = np.array([[[1.5, 3.0]], [[26.0, 27.5]], [[14.0, 14.0]]])
    radii = rng.uniform(5, 9, size=(3, 1, N_ANGLES))
    thickness = np.array([[2.9], [0.05], [2.2]])
    ours = render_rings(centers, radii, thickness, 28)
    for i in range(3):
        ref = render_ring_reference_pil(28, centers[i, 0], radii[i, 0], thickness[i, 0])
        np.testing.assert_array_equal(ours[i], ref // 255)


def test_parameter_ranges_follow_the_tutorial():
    p = draw_parameters(20000, "single", image_size=28, rng=0)
    x, y, r = p.centers[:, 0, 0], p.centers[:, 0, 1], p.radius[:, 0]
    assert x.min() == 5 and x.max() == 23 and y.min() == 5 and y.max() == 23
    edge = np.minimum.reduce([x, y, 28 - x, 28 - y])
    assert r.min() == 4 and np.all(r <= edge - 1)
    assert 0.2 <= p.thickness.min() and p.thickness.max() <= 1.5
    assert 0.5 <= p.deformation.min() and p.deformation.max() <= 3.0
    q = draw_parameters(20000, "n_ring", max_rings=5, image_size=28, rng=1)
    counts = np.bincount(q.n_rings, minlength=6)[1:]
    assert counts.min() > 0.9 * 4000 and counts.max() < 1.1 * 4000
    assert np.all(q.radius[q.present] >= 3) and q.deformation.max() <= 1.0 and q.thickness.max() <= 1.0


def test_images_are_binary_and_reproducible():
    a, pa = simulate_ring_images(50, "n_ring", 2, 28, seed=5)
    b, pb = simulate_ring_images(50, "n_ring", 2, 28, seed=5)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 255}
    assert not np.array_equal(a, simulate_ring_images(50, "n_ring", 2, 28, seed=6)[0])


@pytest.mark.parametrize("mode,folder", [("single", "single_ring"), ("n_ring", "n_ring")])
def test_lit_pixel_distribution_matches_reference_sample(rings_reference, mode, folder):
    """Same generator, so the number of lit pixels per image must follow the reference sample's distribution
    (this catches coverage mistakes such as drawing idealised smooth thin rings)."""
    ref = load_rings(rings_reference / folder)
    sim, _ = simulate_ring_images(4000, mode, 2, 28, seed=0)
    ref_counts = (ref.images > 0).sum(axis=(1, 2))
    sim_counts = (sim > 0).sum(axis=(1, 2))
    assert ks_2samp(ref_counts, sim_counts).pvalue > 0.01
    assert abs(np.median(ref_counts) - np.median(sim_counts)) <= 3
