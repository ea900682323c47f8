"""nstlib.sizes: the one place image sizes are computed."""

import re
from pathlib import Path

import numpy as np
import pytest

from nstlib import images, sizes

PACKAGE = Path(sizes.__file__).parent


@pytest.mark.parametrize(("hw", "side", "expected"), [
    ((512, 768), 256, (171, 256)),   # 512 * 256/768 = 170.67 rounds to 171
    ((100, 50), 400, (400, 200)),    # upscaling too
    ((3, 1000), 100, (1, 100)),      # 0.3 px: at least one pixel
    ((64, 64), 64, (64, 64)),        # already there
    ((301, 200), 150, (150, 100)),   # 200 * 150/301 = 99.67
])
def test_fitted_hw_keeps_the_aspect_ratio_and_rounds(hw, side, expected):
    assert sizes.fitted_hw(hw, side) == expected


@pytest.mark.parametrize("hw", [(512, 768), (301, 200), (3, 1000), (37, 37)])
@pytest.mark.parametrize("side", [16, 99, 256])
def test_resize_max_side_gives_exactly_fitted_hw(hw, side):
    image = np.random.default_rng(0).random((1, *hw, 3), dtype=np.float32)
    assert tuple(images.resize_max_side(image, side).shape[1:3]) == sizes.fitted_hw(hw, side)


def test_pyramid_levels_halve_rounding_up():
    assert sizes.pyramid_hws((65, 64), 3) == [(65, 64), (33, 32), (17, 16)]
    assert sizes.pyramid_hws((5, 4), 1) == [(5, 4)]


@pytest.mark.parametrize(("args", "expected"), [
    ((256, None, None), None), ((256, 300, None), 300), ((256, None, 0.5), 128),
    ((255, None, 0.5), 128), ((10, None, 0.01), 1)])
def test_style_side(args, expected):
    assert sizes.style_side(*args) == expected


@pytest.mark.parametrize(("args", "expected"), [((300, 128, 256), 150), ((256, 256, 256), 256),
                                               ((3, 64, 512), 1), ((100, 96, 256), 38)])
def test_stage_side_scales_with_the_stage(args, expected):
    assert sizes.stage_side(*args) == expected


def test_no_other_module_rounds_a_longer_side_by_itself():
    # The formula "side * x / max(h, w)" rounded to pixels is written once, here.
    pattern = re.compile(r"round\([^)]*\*\s*scale|/\s*max\((height|h), (width|w)\)|"
                         r"round\(\w+ \* \w+ / \w+\)")
    offenders = [path.name for path in PACKAGE.rglob("*.py")
                 if path.name != "sizes.py" and pattern.search(path.read_text())]
    assert offenders == []
