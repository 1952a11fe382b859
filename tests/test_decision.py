import numpy as np
import pytest

from edge.inference.decision import Rules, find_defects, judge


def _frame():
    prob = np.zeros((60, 80), np.float32)
    prob[10:20, 10:30] = 0.9  # 200 px, the big one
    prob[40:43, 50:53] = 0.6  # 9 px
    prob[5, 70] = 0.95  # 1 px speck
    return prob


def test_regions_are_measured_and_sorted_largest_first():
    defects = find_defects(_frame(), Rules(threshold=0.5, min_area_px=5))
    assert [d.area_px for d in defects] == [200, 9, 1]
    big = defects[0]
    assert big.bbox == (10, 10, 20, 10) and big.centroid == pytest.approx((19.5, 14.5))
    assert big.mean_prob == pytest.approx(0.9) and big.max_prob == pytest.approx(0.9)
    assert [d.kept for d in defects] == [True, True, False]


def test_scattered_pixels_are_not_one_region():
    prob = np.zeros((10, 10), np.float32)
    prob[::2, ::2] = 1  # 25 px, none touching
    assert not any(d.kept for d in find_defects(prob, Rules(min_area_px=5)))


def test_area_in_mm2_with_a_calibration():
    defects = find_defects(_frame(), Rules(threshold=0.5, min_area_px=1, mm_per_px=0.5, min_area_mm2=5.0))
    assert [d.area_mm2 for d in defects] == [50.0, 2.25, 0.25]
    assert [d.kept for d in defects] == [True, False, False]


def test_cleanup_removes_specks_and_ignore_hides_regions():
    assert [d.area_px for d in find_defects(_frame(), Rules(cleanup_px=3))] == [200, 9]
    ignore = np.zeros((60, 80), bool)
    ignore[:, :40] = True
    assert [d.area_px for d in find_defects(_frame(), Rules(min_area_px=1), ignore)] == [9, 1]


def test_the_image_score_rule_rejects_a_speck_the_area_rule_passes():
    prob = np.zeros((60, 80), np.float32)
    prob[30:32, 40:42] = 0.97  # a 4 px pit, under min_area_px
    prob[5:25, 5:25] = 0.6  # a big faint region under the image threshold
    area = judge(1, 0.0, prob, Rules(threshold=0.5, min_area_px=500), {})
    assert not area.reject and area.score is None
    score = judge(1, 0.0, prob, Rules(threshold=0.5, min_area_px=500, image_threshold=0.9), {})
    assert score.reject and score.score == pytest.approx(0.97)
    assert [(d.area_px, d.kept) for d in score.defects] == [(400, False), (4, True)]  # the pit gives the lanes
    smoothed = judge(1, 0.0, prob, Rules(threshold=0.5, image_threshold=0.9, smooth_px=3), {})
    assert not smoothed.reject and smoothed.score == pytest.approx(0.6)  # the pit: 0.97 * 4 / 9 after the mean


def test_ignored_pixels_do_not_score():
    prob = np.zeros((60, 80), np.float32)
    prob[5, 5] = 0.99
    ignore = np.zeros((60, 80), bool)
    ignore[:10, :10] = True
    verdict = judge(1, 0.0, prob, Rules(image_threshold=0.5), {}, ignore)
    assert not verdict.reject and verdict.score == 0.0
