"""nstlib.judge: the network-free judge against closed forms and invariances."""

import numpy as np
import pytest

from nstlib import images, judge, patterns


def _texture(size: int = 64, seed: int = 0) -> np.ndarray:
    """Oriented stripes with colour noise: a texture with a clear direction and palette."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    stripes = 0.5 + 0.4 * np.sin(2 * np.pi * (x + 0.5 * y) / 8.0)
    rgb = np.stack([stripes, 0.6 * stripes + 0.2, 1.0 - stripes], axis=-1)
    return np.clip(rgb + 0.05 * rng.standard_normal(rgb.shape), 0, 1)


def test_identical_images_score_zero_distance_and_full_content():
    image = _texture()
    scores = judge.judge(image, image, image)
    assert scores["judge_style"] == 0.0 and scores["judge_color"] == 0.0
    assert scores["judge_texture"] == 0.0
    assert scores["judge_content"] == pytest.approx(1.0, abs=1e-12)


def test_color_distance_of_two_flat_images_is_the_mean_projected_difference():
    a, b = np.full((8, 8, 3), [0.2, 0.5, 0.9]), np.full((6, 10, 3), [0.6, 0.1, 0.3])
    directions = judge._directions()
    expected = np.mean(np.abs(directions @ (np.array([0.2, 0.5, 0.9]) - [0.6, 0.1, 0.3])))
    assert judge.color_distance(a, b) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)


def test_luminance_is_the_bt601_weighted_sum():
    image = np.random.default_rng(1).uniform(size=(4, 5, 3))
    expected = 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
    np.testing.assert_allclose(judge.luminance(image[None]), expected, rtol=1e-12)


def test_shifted_and_rotated_copies_of_a_texture_have_its_statistics():
    texture = _texture()
    shifted = np.roll(texture, (13, -21), axis=(0, 1))
    rotated = np.rot90(texture, 1, axes=(0, 1))
    for copy in (shifted, rotated):
        assert judge.color_distance(copy, texture) == 0.0  # same multiset of pixels
        assert judge.texture_distance(copy, texture) < 1e-6
        assert judge.style_distance(copy, texture) < 1e-6


def test_white_noise_is_far_from_a_texture_and_from_a_painting():
    rng = np.random.default_rng(2)
    noise = rng.uniform(size=(64, 64, 3))
    texture, other_crop = _texture(seed=0), _texture(seed=1)
    near = judge.style_distance(other_crop, texture)
    far = judge.style_distance(noise, texture)
    assert far > 20 * near and far > 0.5
    strokes = images.as_hwc(images.load_sample("brushstrokes", max_size=128))
    crop_a, crop_b = strokes[:64, :64], strokes[64:, 64:]
    assert judge.style_distance(noise, crop_a) > 3 * judge.style_distance(crop_b, crop_a)


def test_texture_statistics_shapes_and_gaussian_kurtosis():
    noise = np.random.default_rng(3).standard_normal((128, 128, 1)) * 0.1 + 0.5
    stats = judge.texture_statistics(np.repeat(noise, 3, axis=-1), scales=3)
    assert stats["log_energy"].shape == (3,) and stats["kurtosis"].shape == (3,)
    assert stats["orientation"].shape == (3, judge.N_ORIENTATION_BINS // 2)
    # Band-passed Gaussian noise is Gaussian: kurtosis 3.
    np.testing.assert_allclose(stats["kurtosis"], 3.0, atol=0.3)


def test_content_score_follows_layout_not_texture():
    photo = images.as_hwc(images.load_sample("chelsea", max_size=96))
    textured = np.clip(photo + 0.15 * np.sin(np.arange(photo.shape[1]) * 2.5)[None, :, None],
                       0, 1)
    noise = np.random.default_rng(4).uniform(size=photo.shape)
    assert judge.content_score(textured, photo) > 0.8
    assert judge.content_score(noise, photo) < 0.3
    with pytest.raises(ValueError, match="one size"):
        judge.content_score(photo[:-1], photo)


def test_bad_shapes_fail_with_one_line():
    with pytest.raises(ValueError, match=r"must have shape \(H, W, 3\) or \(1, H, W, 3\)"):
        judge.color_distance(np.zeros((4, 4)), np.zeros((4, 4, 3)))


def test_a_procedural_style_is_judged_nearer_to_itself_than_to_another():
    stripes = images.as_hwc(patterns.stripes(64))
    checker = images.as_hwc(images.load_sample("checkerboard", max_size=64))
    same = judge.style_distance(np.roll(stripes, 5, axis=1), stripes)
    assert same < judge.style_distance(checker, stripes)


def test_scales_shrink_with_the_image_so_the_coarsest_blur_fits():
    assert judge.default_scales((32, 48, 3)) == 2  # σ = 1, 2 ≤ 32 / 16
    assert judge.default_scales((64, 64, 3)) == 3
    assert judge.default_scales((512, 300, 3), (1000, 1000, 3)) == judge.N_SCALES
    assert judge.default_scales((8, 8, 3)) == 1
