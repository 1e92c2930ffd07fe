"""From attenuation maps to a scanner image: dual-energy transmission, detector effects, palette.

Physics per pixel (notes §1): ``I_E = exp(-A_E)`` with ``A_E = Σ μ_E·t``, a slight detector blur,
photon noise ``σ = sqrt(I / N0)`` (relatively larger where transmission is low) and a small per-
detector gain spread (line-scan streaks). Colour (notes §2): hue from the ratio ``R = A_L / A_H``
(organic ≈1.2 orange, inorganic ≈1.6 green, metal ≥2.5 blue), brightness from the transmission,
white where the beam passes freely. The palette is a lookup table over (R, transmission).
"""

from __future__ import annotations

import numpy as np

# Hue anchors over the ratio R = A_L / A_H (60/100 keV): water 1.21, Al 1.63, Ti 2.8, steel 3.24.
_HUE_ANCHORS = (
    (1.00, (1.00, 0.58, 0.12)),  # organic: orange
    (1.30, (1.00, 0.58, 0.12)),
    (1.45, (0.72, 0.74, 0.14)),  # organic/inorganic mixture: olive
    (1.65, (0.28, 0.72, 0.22)),  # light inorganic (Al, glass): green
    (2.05, (0.22, 0.62, 0.55)),
    (2.50, (0.20, 0.42, 0.92)),  # metal: blue
    (4.00, (0.16, 0.32, 0.88)),
)
TRANSMISSION_BINS = 1024  # per channel; the palette is indexed by sqrt-spaced low/high transmission
WHITE_LEVEL = 0.965  # display transmission at and above which a pixel shows as free belt
FULL_COLOUR_LEVEL = 0.55  # display transmission of full colour; darker below, paler above
LOW_WEIGHT = 0.25  # brightness = I_L^w · I_H^(1-w): mostly the high channel, as scanner displays do
RATIO_PRIOR = 0.03  # attenuation added to both channels (at the organic ratio) to steady R near 0


def hue_of_ratio(ratio: np.ndarray) -> np.ndarray:
    """Base RGB in [0, 1] for material ratios ``R``; ``[..., 3]``."""
    xs = np.array([r for r, _ in _HUE_ANCHORS])
    colours = np.array([c for _, c in _HUE_ANCHORS])
    return np.stack([np.interp(ratio, xs, colours[:, k]) for k in range(3)], axis=-1)


def palette_colour(ratio: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """RGB in [0, 1]: pale tint for thin items, saturated in the middle, dark to black when opaque."""
    transmission = np.asarray(transmission)[..., None]
    saturation = np.clip((WHITE_LEVEL - transmission) / (WHITE_LEVEL - FULL_COLOUR_LEVEL), 0.0, 1.0) ** 0.8
    value = np.clip(transmission / FULL_COLOUR_LEVEL, 0.0, 1.0) ** 0.9
    return ((1.0 - saturation) + saturation * hue_of_ratio(ratio)) * value


def bin_transmission(index: np.ndarray) -> np.ndarray:
    """Transmission at the centre of palette bins (sqrt spacing: fine steps where it is dark)."""
    return np.clip(np.asarray(index, dtype=np.float64) / (TRANSMISSION_BINS - 1), 1e-4, 1.0) ** 2


def bin_index(transmission: np.ndarray) -> np.ndarray:
    """Palette bin of each transmission in [0, 1]."""
    return (np.sqrt(transmission) * np.float32(TRANSMISSION_BINS - 1) + np.float32(0.5)).astype(np.intp)


def material_ratio(att_low: np.ndarray, att_high: np.ndarray) -> np.ndarray:
    """R = A_L / A_H, steadied near zero attenuation towards the organic ratio (thin items read orange)."""
    return (att_low + RATIO_PRIOR * 1.2) / (att_high + RATIO_PRIOR)


def build_palette() -> np.ndarray:
    """Lookup table ``[BINS * BINS, 3]`` uint8, row ``low_bin * BINS + high_bin``."""
    trans = bin_transmission(np.arange(TRANSMISSION_BINS))
    trans_low, trans_high = np.meshgrid(trans, trans, indexing="ij")
    ratio = material_ratio(-np.log(trans_low), -np.log(trans_high))
    rgb = palette_colour(ratio, display_transmission(trans_low, trans_high))
    table = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).reshape(-1, 3)
    table.flags.writeable = False
    return table


def _normal_quantiles() -> np.ndarray:
    """65 536 standard-normal quantiles: a uint16 uniform draw indexes them to give Gaussian noise."""
    u = (np.arange(65536, dtype=np.float64) + 0.5) / 65536
    # Acklam's rational approximation of the inverse normal CDF (relative error < 1.2e-9).
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    tail = np.minimum(u, 1 - u)
    q = np.sqrt(-2 * np.log(tail))
    tails = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
        (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
    )
    tails = np.where(u < 0.5, tails, -tails)
    r = (u - 0.5) ** 2
    central = (
        (u - 0.5)
        * (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )
    table = np.where(np.abs(u - 0.5) <= 0.47575, central, tails).astype(np.float32)
    table.flags.writeable = False
    return table


def _blur_121(image: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with replicated borders (the detector's point spread)."""
    out = image * np.float32(0.5)
    out[1:] += image[:-1] * np.float32(0.25)
    out[:-1] += image[1:] * np.float32(0.25)
    out[0] += image[0] * np.float32(0.25)
    out[-1] += image[-1] * np.float32(0.25)
    rows = out
    out = rows * np.float32(0.5)
    out[:, 1:] += rows[:, :-1] * np.float32(0.25)
    out[:, :-1] += rows[:, 1:] * np.float32(0.25)
    out[:, 0] += rows[:, 0] * np.float32(0.25)
    out[:, -1] += rows[:, -1] * np.float32(0.25)
    return out


def transmissions(
    att_low: np.ndarray, att_high: np.ndarray, *, photons_per_pixel: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Detected low/high transmissions ``I/I0`` in (0, 1] with blur, photon noise and detector gain."""
    floor = np.float32(0.5 / photons_per_pixel)
    noise_scale = np.float32(1.0 / np.sqrt(photons_per_pixel))
    detected = []
    for att in (att_low, att_high):
        ideal = _blur_121(np.exp(-att))
        gain = (1.0 + rng.normal(0.0, 0.003, (1, ideal.shape[1]))).astype(np.float32)  # per detector column
        noise = NORMAL_QUANTILES.take(rng.integers(0, 65536, ideal.shape, dtype=np.uint16))
        noisy = ideal * gain
        noisy += np.sqrt(ideal) * noise_scale * noise
        detected.append(np.clip(noisy, floor, 1.0, out=noisy))
    return detected[0], detected[1]


def display_transmission(trans_low: np.ndarray, trans_high: np.ndarray) -> np.ndarray:
    """Brightness of a pixel, ``exp(-(w·A_L + (1-w)·A_H))``: 2 mm steel 0.40, 1 cm water 0.84."""
    return trans_low**LOW_WEIGHT * trans_high ** (1.0 - LOW_WEIGHT)


def colourise(trans_low: np.ndarray, trans_high: np.ndarray) -> np.ndarray:
    """Pseudo-colour ``uint8 [H, W, 3]`` image from the two detected transmissions."""
    index = bin_index(trans_low)
    index *= TRANSMISSION_BINS
    index += bin_index(trans_high)
    return PALETTE.take(index, axis=0)


def render_image(
    att_low: np.ndarray, att_high: np.ndarray, *, photons_per_pixel: float, rng: np.random.Generator
) -> np.ndarray:
    """Attenuation maps -> ``uint8 [H, W, 3]`` scanner image."""
    trans_low, trans_high = transmissions(att_low, att_high, photons_per_pixel=photons_per_pixel, rng=rng)
    return colourise(trans_low, trans_high)


PALETTE = build_palette()
NORMAL_QUANTILES = _normal_quantiles()
