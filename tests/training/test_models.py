import keras
import numpy as np
import pytest

from training.losses import Dice, IoU, SegmentationLoss
from training.models import attention_gate, build_model


@pytest.mark.parametrize("arch", ["attention_unet", "unet", "attention_unet_ds"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("upsampling", ["transpose", "resize"])
def test_builders_give_the_right_shapes(arch, channels, upsampling):
    model = build_model(arch, (64, 96), channels, base_filters=4, depth=3, upsampling=upsampling)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 96, channels)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x))
    assert model.input_shape == (None, 64, 96, channels)
    assert y.shape == (2, 64, 96, 1)
    assert ((y >= 0) & (y <= 1)).all()


def test_attention_unet_gates_every_skip_and_unet_none():
    gated = build_model("attention_unet", 64, 3, base_filters=4, depth=3)
    plain = build_model("unet", 64, 3, base_filters=4, depth=3)
    assert sorted(l.name for l in gated.layers if l.name.endswith("_gated")) == ["gate0_gated", "gate1_gated", "gate2_gated"]
    assert not [l for l in plain.layers if l.name.startswith("gate")]


def test_the_device_variant_is_gated_and_separable_after_its_first_conv_and_far_smaller():
    ds = build_model("attention_unet_ds", 64, 3, base_filters=16, depth=3)
    full = build_model("attention_unet", 64, 3, base_filters=16, depth=3)
    convs = [l for l in ds.layers if l.name.endswith("_conv")]
    assert type(convs[0]).__name__ == "Conv2D" and all(type(l).__name__ == "SeparableConv2D" for l in convs[1:])
    assert sorted(l.name for l in ds.layers if l.name.endswith("_gated")) == ["gate0_gated", "gate1_gated", "gate2_gated"]
    assert ds.count_params() < full.count_params() / 3


def test_every_conv_is_followed_by_batchnorm_then_relu():
    model = build_model("attention_unet", 64, 3, base_filters=4, depth=2)
    names = [l.name for l in model.layers]
    for conv in [n for n in names if n.endswith("_conv")]:
        stem = conv[: -len("_conv")]
        assert f"{stem}_bn" in names and f"{stem}_relu" in names
        assert model.get_layer(f"{stem}_bn").input is model.get_layer(conv).output


def test_input_size_must_fit_the_depth():
    with pytest.raises(ValueError, match="divisible"):
        build_model("unet", 100, 3, depth=4)


def _gate_model():
    skip, gating = keras.Input((16, 16, 4)), keras.Input((8, 8, 8))
    model = keras.Model([skip, gating], attention_gate(skip, gating, 2, "g"))
    return model, model.get_layer("g_psi")


@pytest.mark.parametrize("bias, expect_zero", [(-50.0, True), (50.0, False)])
def test_attention_gate_really_gates(bias, expect_zero):
    model, psi = _gate_model()
    kernel, _ = psi.get_weights()
    psi.set_weights([np.zeros_like(kernel), np.array([bias], "float32")])
    rng = np.random.default_rng(0)
    skip = rng.uniform(1, 2, (1, 16, 16, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(model([skip, rng.normal(size=(1, 8, 8, 8)).astype("float32")]))
    np.testing.assert_allclose(out, 0 if expect_zero else skip, atol=1e-5)


def test_model_with_loss_and_metrics_reloads(tmp_path):
    model = build_model("attention_unet", 32, 1, base_filters=4, depth=2)
    model.compile(optimizer="adam", loss=SegmentationLoss(1.0, 0.5, focal_gamma=2.0), metrics=[Dice(), IoU()])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    y = (x > 200).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert again.loss.get_config()["dice"] == 0.5 and again.loss.get_config()["focal_gamma"] == 2.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)


def test_keras_metrics_count_like_the_edge_metrics():
    from edge.evaluation.metrics import counts, pixel_scores

    rng = np.random.default_rng(3)
    truth = (rng.random((4, 16, 16, 1)) < 0.2).astype("float32")
    prob = rng.random((4, 16, 16, 1)).astype("float32")
    expected = pixel_scores(*counts(prob >= 0.5, truth > 0))
    for metric, key in ((Dice(), "dice"), (IoU(), "iou")):
        metric.update_state(truth[:2], prob[:2])
        metric.update_state(truth[2:], prob[2:])
        assert float(metric.result()) == pytest.approx(expected[key], abs=1e-6)


def test_focal_term_lowers_the_loss_of_easy_pixels():
    y = np.zeros((1, 4, 4, 1), "float32")
    p = np.full((1, 4, 4, 1), 0.1, "float32")
    plain = float(SegmentationLoss(1.0, 0.0)(y, p))
    focal = float(SegmentationLoss(1.0, 0.0, focal_gamma=2.0)(y, p))
    assert focal == pytest.approx(plain * 0.1**2, rel=1e-4)


def test_crops_hold_defects_as_often_as_asked_even_when_most_images_are_clean():
    from training.data import CropDataset

    rng = np.random.default_rng(0)
    clean = [(f"c{i}", rng.integers(0, 255, (80, 80, 1), dtype=np.uint8), np.zeros((80, 80), np.uint8)) for i in range(9)]
    mask = np.zeros((80, 80), np.uint8)
    mask[40:43, 10:20] = 1
    pairs = clean + [("d", rng.integers(0, 255, (80, 80, 1), dtype=np.uint8), mask)]
    batches = CropDataset(pairs, crop=32, batch_size=50, samples_per_epoch=200, defect_fraction=0.6)
    share = np.mean([y[i].any() for b in range(len(batches)) for y in [batches[b][1]] for i in range(50)])
    assert 0.5 < share < 0.75  # not the 6 % that picking the image first would give
    again = CropDataset(pairs, crop=32, batch_size=50, samples_per_epoch=200, defect_fraction=0.6)
    np.testing.assert_array_equal(batches[1][0], again[1][0])  # same seed, same batches


def test_clean_crops_cover_an_images_corners_about_as_often_as_its_centre():
    from training.data import random_crop

    rng = np.random.default_rng(0)
    h, w, size = 300, 280, 64
    where = np.arange(h * w).reshape(h, w, 1)
    covered = np.zeros(h * w)
    for _ in range(3000):
        crop, _ = random_crop(where, np.zeros((h, w), np.uint8), size, rng, near_defect=False)
        covered[crop.ravel()] += 1
    covered = covered.reshape(h, w)
    corners = [covered[0, 0], covered[0, -1], covered[-1, 0], covered[-1, -1]]
    assert min(corners) > 0.8 * covered[h // 2, w // 2]  # a uniform offset: 1 / 4096 as often


def test_batch_dice_pools_pixels_and_image_dice_scores_each_image():
    y = np.zeros((2, 4, 4, 1), "float32")
    y[1, :2] = 1.0
    p = y.copy()
    p[0] = 0.25  # a clean crop with faint false positives next to a perfect defect crop
    image = SegmentationLoss(0.0, 1.0, dice_over="image")
    batch = SegmentationLoss(0.0, 1.0, dice_over="batch")
    per_image = keras.ops.convert_to_numpy(image.call(y, p))
    pooled = keras.ops.convert_to_numpy(batch.call(y, p))
    assert per_image[0] == pytest.approx(1 - 1 / 5) and per_image[1] == pytest.approx(0.0)
    assert pooled[0] == pooled[1] == pytest.approx(1 - 17 / 21)


def test_the_untrained_model_starts_at_the_prior_not_at_one_half():
    model = build_model("unet", 32, 1, base_filters=4, depth=2, prior=0.01)
    bias = model.get_layer("defect").get_weights()[1]
    np.testing.assert_allclose(bias, [np.log(0.01 / 0.99)], rtol=1e-6)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    assert float(np.mean(keras.ops.convert_to_numpy(model(x)))) < 0.05
    with pytest.raises(ValueError, match="prior"):
        build_model("unet", 32, 1, base_filters=4, depth=2, prior=0.0)


def test_dice_over_defective_ignores_clean_crops_and_averages_the_others():
    y = np.zeros((3, 4, 4, 1), "float32")
    y[1, :2] = 1.0  # 8 defect pixels, predicted perfectly: loss 0
    y[2, 0, 0] = 1.0  # 1 defect pixel, predicted 0: Dice (0 + 1) / (1 + 0 + 1) = 1/2
    p = y.copy()
    p[0] = 0.25  # a clean crop with faint false positives: not counted
    p[2] = 0.0
    loss = SegmentationLoss(0.0, 1.0, dice_over="defective")
    per_crop = keras.ops.convert_to_numpy(loss.call(y, p))
    assert per_crop[0] == 0.0
    assert float(np.mean(per_crop)) == pytest.approx((0.0 + 0.5) / 2, abs=1e-5)  # mean over the 2 defective crops
    clean = np.zeros((2, 4, 4, 1), "float32")
    assert float(np.mean(keras.ops.convert_to_numpy(loss.call(clean, clean + 0.3)))) == 0.0


def test_tversky_alpha_makes_misses_cost_more_than_false_alarms_and_0_5_is_dice():
    y = np.zeros((1, 4, 4, 1), "float32")
    y[0, :2] = 1.0  # 8 defect pixels
    missed = y.copy()
    missed[0, 0] = 0.0  # 4 missed: tp 4, fn 4, fp 0
    extra = y.copy()
    extra[0, 2] = 1.0  # 4 false: tp 8, fn 0, fp 4

    def value(alpha, p, gamma=1.0):
        return float(keras.ops.convert_to_numpy(SegmentationLoss(0.0, 1.0, alpha=alpha, gamma=gamma).call(y, p))[0])

    assert value(0.5, missed) == pytest.approx(1 - (2 * 4 + 1) / (8 + 4 + 1), abs=1e-6)  # plain soft Dice
    assert value(0.7, missed) > value(0.7, extra)
    assert value(0.7, missed) == pytest.approx(1 - 4.5 / (4 + 0.7 * 4 + 0.5), abs=1e-6)
    assert value(0.7, missed, gamma=0.75) == pytest.approx(value(0.7, missed) ** 0.75, abs=1e-6)
