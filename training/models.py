"""U-Net and Attention U-Net (Oktay et al. 2018) in backend-agnostic Keras 3.

    model = build_model("attention_unet", input_size=256, channels=3)
    model(raw_pixels_0_255)  # -> (N, H, W, 1) defect probability

Both share one encoder/decoder; the Attention U-Net puts an additive attention gate on every skip
connection, gated by the coarser decoder signal. Blocks are Conv -> BatchNorm -> ReLU (the BN
folds into the conv at export) and the model scales pixels itself, so it takes raw 0-255 input.
`attention_unet_ds` is the device variant: every 3x3 conv after the first is depthwise separable
(a 3x3 per channel, then a 1x1 across them: about a seventh of the multiply-accumulates at 16-128
channels), for high-resolution frames at line rate on a Pi's or a panel PC's cores.
"""

from __future__ import annotations

import math

import keras
from keras import layers

ARCHITECTURES = ("attention_unet", "unet", "attention_unet_ds")
UPSAMPLING = ("transpose", "resize")
BN_MOMENTUM = 0.9  # Keras' 0.99 leaves the moving statistics stale for the first few hundred steps
OUTPUT_PRIOR = 0.01  # the defect probability the untrained model starts at (RetinaNet's prior init)


def conv_bn_relu(x, filters: int, name: str, kernel: int = 3, separable: bool = False):
    """Conv (no bias; depthwise separable if asked) -> BatchNorm -> ReLU."""
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def conv_block(x, filters: int, name: str, separable: bool = False, first_full: bool = False):
    """Two Conv-BN-ReLU layers: one U-Net level (`first_full`: the first a full conv even when separable)."""
    x = conv_bn_relu(x, filters, f"{name}_a", separable=separable and not first_full)
    return conv_bn_relu(x, filters, f"{name}_b", separable=separable)


def attention_gate(skip, gating, inter_filters: int, name: str):
    """Additive attention gate: skip * sigmoid(psi(relu(theta(skip) + phi(gating)))).

    `gating` is the coarser signal at half the skip's resolution; theta downsamples the skip by a
    strided conv to meet it, and the coefficients are upsampled back to weight the skip pixels.
    """
    theta = layers.Conv2D(inter_filters, 2, strides=2, use_bias=False, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(inter_filters, 1, name=f"{name}_phi")(gating)
    f = layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    psi = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_psi")(f)
    alpha = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_alpha")(psi)
    return layers.Multiply(name=f"{name}_gated")([skip, alpha])


def upsample(x, filters: int, mode: str, name: str):
    """Double the resolution by a transposed conv or by bilinear resize + conv."""
    if mode == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, use_bias=False, name=f"{name}_tconv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(x)
    return conv_bn_relu(x, filters, name)


def build_model(
    arch: str = "attention_unet",
    input_size: int | tuple[int, int] = 256,
    channels: int = 3,
    base_filters: int = 16,
    depth: int = 4,
    upsampling: str = "transpose",
    prior: float = OUTPUT_PRIOR,
) -> keras.Model:
    """A U-Net (`unet`), Attention U-Net (`attention_unet`) or its device variant (`attention_unet_ds`)
    taking raw 0-255 pixels.

    The output bias starts at logit(`prior`), so the untrained model says "defect" with probability
    `prior`, not 0.5. With a zero bias the 97-99 % background pixels start at 0.5 and the first
    hundreds of steps go into pulling them down (magnetic_tile, 128 px crops: background still at
    0.17-0.25 after 384 steps; with the prior, 0.01-0.03 from the first epoch).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected one of {ARCHITECTURES}, got {arch!r}")
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling: expected one of {UPSAMPLING}, got {upsampling!r}")
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    if height % 2**depth or width % 2**depth:
        raise ValueError(f"input size {height}x{width} must be divisible by 2**depth = {2**depth}")
    inputs = keras.Input((height, width, channels), name="pixels")
    x = layers.Rescaling(1 / 255.0, name="scale")(inputs)
    separable = arch.endswith("_ds")
    skips = []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, f"enc{level}", separable, first_full=level == 0)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = conv_block(x, base_filters * 2**depth, "bottleneck", separable)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        skip = skips[level]
        if arch.startswith("attention_unet"):
            skip = attention_gate(skip, x, max(filters // 2, 1), f"gate{level}")
        x = upsample(x, filters, upsampling, f"up{level}")
        x = layers.Concatenate(name=f"cat{level}")([x, skip])
        x = conv_block(x, filters, f"dec{level}", separable)
    if not 0 < prior < 1:
        raise ValueError(f"prior: expected a probability in (0, 1), got {prior}")
    bias = keras.initializers.Constant(math.log(prior / (1 - prior)))
    outputs = layers.Conv2D(1, 1, activation="sigmoid", bias_initializer=bias, dtype="float32", name="defect")(x)
    return keras.Model(inputs, outputs, name=arch)
