import numpy as np
import pytest

from edge.evaluation.evaluate import calibrate
from edge.evaluation.metrics import (
    all_defect_dice,
    average_precision,
    best_dice,
    best_threshold,
    dice_curve,
    evaluate_maps,
    image_metrics,
    pixel_scores,
    recall_at_false_reject_rate,
    recall_false_reject_curve,
    roc_auc,
    threshold_for_recall,
)
from edge.inference.decision import image_score


def test_pixel_metrics_match_a_hand_count():
    prob = np.array([[0.9, 0.8, 0.1], [0.6, 0.2, 0.7]], np.float32)
    mask = np.array([[1, 1, 1], [0, 0, 0]], np.uint8)
    # at 0.5: predicted (0,0) (0,1) (1,0) (1,2): tp 2, fp 2, fn 1
    report = evaluate_maps([prob], [mask], threshold=0.5, min_area_px=1)
    assert report["dice"] == pytest.approx(4 / 7)
    assert report["iou"] == pytest.approx(2 / 5)
    assert report["precision"] == pytest.approx(2 / 4)
    assert report["recall"] == pytest.approx(2 / 3)


def test_global_dice_pools_pixels_and_mean_image_dice_averages_images():
    a_prob, a_mask = np.ones((2, 2)), np.ones((2, 2))  # tp 4
    b_prob, b_mask = np.zeros((2, 2)), np.array([[1, 0], [0, 0]])  # fn 1
    report = evaluate_maps([a_prob, b_prob], [a_mask, b_mask], threshold=0.5, min_area_px=1)
    assert report["dice"] == pytest.approx(8 / 9)
    assert report["mean_image_dice"] == pytest.approx(0.5)


def test_empty_truth_and_empty_prediction_is_perfect():
    assert pixel_scores(0, 0, 0) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}


def test_image_level_recall_and_false_reject_rate_at_min_area():
    big = np.zeros((20, 20)); big[2:8, 2:8] = 1  # 36 px region
    tiny = np.zeros((20, 20)); tiny[0, 0] = 1  # 1 px region
    empty = np.zeros((20, 20))
    probs = [big, empty, big, tiny]
    masks = [big, big, empty, empty]  # defective found, defective missed, clean rejected, clean kept
    report = evaluate_maps(probs, masks, threshold=0.5, min_area_px=10)
    assert report["image_recall"] == 0.5
    assert report["false_reject_rate"] == 0.5
    assert (report["defective_images"], report["clean_images"]) == (2, 2)


def test_best_threshold_separates_the_classes():
    rng = np.random.default_rng(0)
    mask = (rng.random((64, 64)) < 0.1).astype(np.uint8)
    prob = np.where(mask, rng.uniform(0.7, 0.9, mask.shape), rng.uniform(0.0, 0.6, mask.shape))
    t = best_threshold([prob], [mask])
    assert 0.62 <= t <= 0.68  # the middle of the perfect plateau 0.60-0.70
    assert evaluate_maps([prob], [mask], t)["dice"] == 1.0


def test_best_dice_scores_an_under_confident_model_that_0_5_calls_empty():

    mask = np.zeros((10, 10), np.uint8)
    mask[2:4, 2:4] = 1  # 4 defect pixels
    prob = np.where(mask, 0.3, 0.02)  # every probability below 0.5, yet the classes separate perfectly
    assert dice_curve([prob], [mask], [0.5])[1][0] == 0.0
    threshold, dice = best_dice([prob], [mask])
    assert dice == 1.0 and 0.05 <= threshold <= 0.3


def test_all_defect_dice_is_the_floor_of_marking_everything():

    a, b = np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)
    a[0, :2] = 1  # 2 defect pixels of 40: tp 2, fp 38 -> 4 / 42
    assert all_defect_dice([a, b]) == pytest.approx(4 / 42)
    ones = [np.ones((4, 5)), np.ones((4, 5))]
    assert all_defect_dice([a, b]) == pytest.approx(evaluate_maps(ones, [a, b], 0.5)["dice"])


# three defective images (0.9, 0.7, 0.7) and two clean ones (0.8, 0.3)
LABELS = [True, False, True, False, True]
SCORES = [0.9, 0.8, 0.7, 0.3, 0.7]


def test_image_auroc_and_average_precision_match_a_hand_count():

    # pairs (defective, clean): 0.9 beats both, each 0.7 beats only 0.3: 4 of 6
    assert roc_auc(LABELS, SCORES) == pytest.approx(4 / 6)
    # at 0.9: precision 1, recall 1/3; at 0.7: precision 3/4, recall 1 -> 1/3 * 1 + 2/3 * 3/4
    assert average_precision(LABELS, SCORES) == pytest.approx(5 / 6)
    assert roc_auc([True, False], [0.5, 0.5]) == 0.5 and average_precision([True, False], [0.5, 0.5]) == 0.5
    assert roc_auc([True, True], [0.1, 0.2]) is None and average_precision([False], [0.3]) is None


def test_recall_false_reject_curve_lists_every_operating_point():

    curve = recall_false_reject_curve(LABELS, SCORES)
    assert curve["threshold"] == [0.9, 0.8, 0.7, 0.3]
    assert curve["recall"] == pytest.approx([1 / 3, 1 / 3, 1, 1])
    assert curve["false_reject_rate"] == pytest.approx([0, 0.5, 0.5, 1])

    assert recall_at_false_reject_rate(LABELS, SCORES, 0.05) == pytest.approx(1 / 3)  # only 0.9 before a false reject
    assert recall_at_false_reject_rate(LABELS, SCORES, 0.5) == 1.0


def test_threshold_for_recall_catches_the_target_with_a_margin():

    every = threshold_for_recall(LABELS, SCORES, 1.0)  # lowest defective 0.7, next lower 0.3: halfway
    assert every["image_threshold"] == pytest.approx(0.5)
    assert (every["recall"], every["false_reject_rate"]) == (1.0, 0.5)
    assert every["recall_lower_95"] == pytest.approx(0.05 ** (1 / 3))  # 3 images say little
    third = threshold_for_recall(LABELS, SCORES, 0.3)  # one of three: above the clean 0.8
    assert third["image_threshold"] == pytest.approx(0.85) and third["false_reject_rate"] == 0.0
    assert third["recall"] == pytest.approx(1 / 3) and third["recall_lower_95"] is None
    assert threshold_for_recall([False, False], [0.2, 0.4]) is None


def test_a_false_reject_budget_lowers_the_threshold_under_the_weakest_val_defect_but_never_costs_a_catch():
    clean = [0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.0]
    labels, scores = [True] * 3 + [False] * 10, [0.9, 0.8, 0.7] + clean
    tight = threshold_for_recall(labels, scores, 1.0)
    assert tight["image_threshold"] == pytest.approx(0.65) and tight["false_reject_rate"] == 0.0
    spent = threshold_for_recall(labels, scores, 1.0, false_reject_budget=0.25)  # 2 of 10 clean: above the third, 0.4
    assert spent["image_threshold"] == pytest.approx(0.45)
    assert (spent["recall"], spent["false_reject_rate"], spent["false_reject_budget"]) == (1.0, 0.2, 0.25)
    assert not 0.55 >= tight["image_threshold"] and 0.55 >= spent["image_threshold"]  # a weaker defect than val's
    assert threshold_for_recall(labels, scores, 1.0, 0.05)["image_threshold"] == pytest.approx(0.65)  # not one clean
    costly = threshold_for_recall([True] * 4 + [False] * 10, [0.9, 0.8, 0.7, 0.15] + clean, 1.0, 0.2)
    assert costly["image_threshold"] == pytest.approx(0.125) and costly["recall"] == 1.0  # the catch rate wins
    assert costly["false_reject_rate"] == pytest.approx(0.5)


def test_image_score_is_the_max_and_smoothing_ignores_a_lone_hot_pixel():
    speck = np.zeros((20, 20), np.float32)
    speck[5, 5] = 0.9
    blob = np.zeros((20, 20), np.float32)
    blob[10:15, 10:15] = 0.9
    assert image_score(speck) == pytest.approx(0.9) and image_score(speck, 5) == pytest.approx(0.9 / 25)
    assert image_score(blob, 5) == pytest.approx(0.9)
    masks = [np.zeros((20, 20)), blob > 0]
    report = image_metrics([speck, blob], masks, image_threshold=0.5, smooth_px=5)
    assert report["image_auroc"] == 1.0 and report["image_ap"] == 1.0
    assert (report["score_recall"], report["score_false_reject_rate"]) == (1.0, 0.0)
    assert image_metrics([speck, blob], masks, image_threshold=0.5)["score_false_reject_rate"] == 1.0


def test_calibrate_needs_defective_and_clean_images():
    hot, cold = np.full((4, 4), 0.9, np.float32), np.full((4, 4), 0.1, np.float32)
    defect, clean = np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
    point = calibrate([hot, cold], [defect, clean])
    assert point.image_threshold == pytest.approx(0.5) and point.false_reject_rate == 0.0
    assert point.score == "max probability" and point.smooth_px == 0
    assert calibrate([hot, hot], [defect, defect]) is None  # every image defective (crackforest)
    assert calibrate([cold], [clean]) is None


def test_calibrate_picks_the_box_mean_with_the_fewest_val_false_rejects():
    """Clean parts with one hot pixel each, defects as patches: the plain max rejects every clean part at
    a full catch rate, a 5-pixel box mean none; auto (None) picks a mean that tells them apart."""
    def patch(size):
        prob = np.zeros((20, 20), np.float32)
        prob[8 : 8 + size, 8 : 8 + size] = 0.95
        return prob

    probs = [patch(1)] * 4 + [patch(6)] * 3
    masks = [np.zeros((20, 20))] * 4 + [p > 0 for p in probs[4:]]
    assert calibrate(probs, masks, smooth_px=0).false_reject_rate == 1.0
    point = calibrate(probs, masks)
    assert point.smooth_px > 0 and (point.recall, point.false_reject_rate) == (1.0, 0.0)
