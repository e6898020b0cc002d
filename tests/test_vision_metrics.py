"""Pixel metrics against hand-computed values on tiny maps, and against brute force."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from usfad.errors import DataError
from usfad.vision.metrics import aupro, image_auroc, pixel_auroc, pro_curve, vision_metrics


def test_pixel_auroc_counts_pairs_with_ties_as_half():
    # 2 images of 2x2. Defect pixels: 0.9 and 0.4. Normal pixels: 0.1 0.4 0.5 0.2 0.3 0.0.
    # 0.9 beats all 6 normals -> 6; 0.4 beats 0.1 0.2 0.3 0.0 -> 4, ties 0.4 -> 0.5.
    # AUROC = (6 + 4 + 0.5) / (2 * 6) = 10.5 / 12 = 0.875
    masks = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    maps = np.array([[[0.9, 0.1], [0.4, 0.5]], [[0.4, 0.2], [0.3, 0.0]]])
    assert pixel_auroc(masks, maps) == pytest.approx(0.875)


def test_pixel_auroc_matches_sklearn_on_random_maps():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 1, 16, 16)) < 0.1
    maps = rng.normal(size=(3, 1, 16, 16)).round(1) + masks  # rounding makes ties
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert pixel_auroc(torch.from_numpy(masks), torch.from_numpy(maps)) == pytest.approx(pixel_auroc(masks, maps))


def _two_regions(tie: bool):
    """Two 4x4 images, one defect region each; 20 normal pixels.

    Image 0: region A = 2x2 block (4 px) at score 0.9. Image 1: region B = rows 0-1 (8 px),
    row 0 at 0.7, row 1 at 0.2 (or 0.4 when ``tie``). Normal pixels: one 0.95, two 0.6,
    three 0.4 (four when ``tie``), the rest 0.1. PRO(t) = (frac of A >= t + frac of B >= t) / 2.
    """
    m = np.zeros((2, 4, 4), dtype=np.uint8)
    m[0, 0:2, 0:2] = 1
    m[1, 0:2, :] = 1
    s = np.full((2, 4, 4), 0.1)
    s[0, 0:2, 0:2] = 0.9
    s[0, 0, 2], s[0, 0, 3], s[0, 1, 2] = 0.95, 0.6, 0.6
    s[0, 1, 3], s[0, 2, 0], s[0, 2, 1] = 0.4, 0.4, 0.4
    s[1, 0, :] = 0.7
    s[1, 1, :] = 0.4 if tie else 0.2
    if tie:
        s[0, 2, 2] = 0.4
    return m, s


def test_aupro_hand_computed_without_interpolation():
    # Thresholds (FPR = #normal >= t / 20, PRO):
    #   0.95 -> (0.05, 0)   0.9 -> (0.05, 0.5)   0.7 -> (0.05, 0.75)   0.6 -> (0.15, 0.75)
    #   0.4 -> (0.30, 0.75)  0.2 -> (0.30, 1.0)   0.1 -> (1.0, 1.0)
    # Area up to FPR 0.3: 0.10 * 0.75 + 0.15 * 0.75 = 0.1875; / 0.3 = 0.625
    m, s = _two_regions(tie=False)
    fpr, pro = pro_curve(m, s)
    assert fpr.tolist() == pytest.approx([0, 0.05, 0.05, 0.05, 0.15, 0.30, 0.30, 1.0])
    assert pro.tolist() == pytest.approx([0, 0, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0])
    assert aupro(m, s) == pytest.approx(0.625)


def test_aupro_hand_computed_with_a_tie_and_the_cut_at_0_3():
    # As above up to 0.6 -> (0.15, 0.75); then 0.4 is shared by 4 normals and region B's row 1:
    #   0.4 -> (0.35, 1.0). Cut at 0.3: PRO = 0.75 + (0.15 / 0.20) * 0.25 = 0.9375.
    # Area: 0.10 * 0.75 + 0.15 * (0.75 + 0.9375) / 2 = 0.075 + 0.1265625 = 0.2015625; / 0.3 = 0.671875
    m, s = _two_regions(tie=True)
    assert aupro(m, s) == pytest.approx(0.671875)


def test_aupro_regions_are_eight_connected_and_weighted_equally():
    # One 4x4 image. Defect pixels (0,0), (1,1), (1,2): diagonal contact makes ONE region of 3.
    # (0,0) scores 1.0, the other two 0.0; the 13 normal pixels score 0.5.
    # t=1.0 -> (FPR 0, PRO 1/3); t=0.5 -> (1.0, 1/3). Area up to 0.3 = 0.3 * 1/3; / 0.3 = 1/3.
    # (With 4-connectivity the regions would be {(0,0)} and {(1,1),(1,2)}: PRO 1/2.)
    m = np.zeros((4, 4), dtype=np.uint8)
    m[0, 0] = m[1, 1] = m[1, 2] = 1
    s = np.full((4, 4), 0.5)
    s[0, 0], s[1, 1], s[1, 2] = 1.0, 0.0, 0.0
    assert aupro(m, s) == pytest.approx(1 / 3)


def _brute_force_aupro(m, s, limit=0.3):
    regions = []
    for i in range(len(m)):
        lab, n = ndimage.label(m[i], structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = s[m == 0]
    xs, ys = [0.0], [0.0]
    for t in np.unique(s)[::-1]:
        xs.append(np.mean(normal >= t))
        ys.append(np.mean([np.mean(s[i][r] >= t) for i, r in regions]))
    xs, ys = np.array(xs), np.array(ys)
    j = int(np.argmax(xs > limit))
    y_cut = np.interp(limit, xs[j - 1 : j + 1], ys[j - 1 : j + 1])
    x, y = np.append(xs[:j], limit), np.append(ys[:j], y_cut)
    return np.trapezoid(y, x) / limit


def test_aupro_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(1)
    m = ndimage.binary_dilation(rng.random((4, 20, 20)) < 0.01, structure=np.ones((1, 3, 3)))
    s = rng.random((4, 20, 20)).round(2) + 0.4 * m  # ties between normal and defect pixels
    assert aupro(m.astype(np.uint8), s) == pytest.approx(_brute_force_aupro(m, s))


def test_perfect_and_inverted_maps_give_one_and_zero():
    m, s = _two_regions(tie=False)
    assert aupro(m, m.astype(float)) == pytest.approx(1.0)
    assert pixel_auroc(m, m.astype(float)) == pytest.approx(1.0)
    assert aupro(m, 1.0 - m) == pytest.approx(0.0)


def test_vision_metrics_reports_image_and_pixel_scores():
    m, s = _two_regions(tie=False)
    out = vision_metrics(
        [0, 1, 1], [0.1, 0.5, 0.9], np.concatenate([np.zeros((1, 4, 4)), m]), np.concatenate([s[:1], s])
    )
    assert set(out) == {"image_auroc", "pixel_auroc", "aupro"}
    assert out["image_auroc"] == image_auroc([0, 1, 1], [0.1, 0.5, 0.9]) == 1.0


def test_bad_masks_and_maps_are_rejected():
    m, s = _two_regions(tie=False)
    with pytest.raises(DataError, match="both be"):
        aupro(m, s[:, :3])
    with pytest.raises(DataError, match="0/1"):
        pixel_auroc(m * 255, s)
    with pytest.raises(DataError, match="both defect"):
        aupro(np.zeros_like(m), s)
    with pytest.raises(DataError, match="NaN"):
        pixel_auroc(m, np.full(s.shape, np.nan))


# --- anomaly maps (usfad.vision.anomaly_map) ---------------------------------------------

from usfad.vision.anomaly_map import anomaly_map, gaussian_blur, image_scores  # noqa: E402


def _levels(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.rand(batch, 16, 16, generator=g),
        torch.rand(batch, 8, 8, generator=g),
        torch.rand(batch, 4, 4, generator=g),
    ]


def test_anomaly_map_has_the_image_size():
    assert anomaly_map(_levels(3), 64).shape == (3, 64, 64)
    assert anomaly_map(_levels(2), (48, 32), combine="likelihood", sigma=0).shape == (2, 48, 32)


def test_an_images_map_does_not_depend_on_its_batch():
    levels = _levels(4)
    whole = anomaly_map(levels, 64)
    alone = anomaly_map([lv[2:3] for lv in levels], 64)
    scaled_others = anomaly_map([torch.cat([lv[:2] * 100, lv[2:]]) for lv in levels], 64)
    assert torch.allclose(whole[2:3], alone, atol=1e-6)
    assert torch.allclose(whole[2:], scaled_others[2:], atol=1e-6)
    assert torch.allclose(image_scores(whole)[2:3], image_scores(alone))


def test_constant_levels_give_a_constant_map_under_each_rule():
    levels = [torch.full((1, 8, 8), 2.0), torch.full((1, 4, 4), 4.0)]
    assert torch.allclose(anomaly_map(levels, 32, "mean"), torch.full((1, 32, 32), 3.0))
    assert torch.allclose(anomaly_map(levels, 32, "sum"), torch.full((1, 32, 32), 6.0))
    assert torch.allclose(anomaly_map(levels, 32, "max"), torch.full((1, 32, 32), 4.0))
    expected = 1 - (np.exp(-2.0) + np.exp(-4.0)) / 2
    assert torch.allclose(anomaly_map(levels, 32, "likelihood"), torch.full((1, 32, 32), expected))
    assert torch.allclose(anomaly_map(levels, 32, lambda s: s[0]), torch.full((1, 32, 32), 2.0))
    with pytest.raises(ValueError, match="combine must be one of"):
        anomaly_map(levels, 32, "median")


def test_gaussian_blur_keeps_mass_and_spreads_a_spike():
    spike = torch.zeros(1, 65, 65)
    spike[0, 32, 32] = 1.0
    out = gaussian_blur(spike, sigma=4)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)  # spike far from the border: nothing reflected
    assert out[0, 32, 32] == out.max() and out[0, 32, 36] / out[0, 32, 32] == pytest.approx(np.exp(-0.5), rel=1e-3)
    assert torch.equal(gaussian_blur(spike, sigma=0), spike)


def test_image_score_is_max_or_top_k_mean():
    maps = torch.tensor([[[1.0, 5.0], [3.0, 2.0]]])
    assert image_scores(maps).tolist() == [5.0]
    assert image_scores(maps, top_k=2).tolist() == [4.0]
    with pytest.raises(ValueError, match="top_k"):
        image_scores(maps, top_k=5)
