"""The ``nstlib.cli`` package: small modules importing one way, and its checks the library's."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from nstlib import cli
from nstlib._options import ConfigError
from nstlib.plan import make_plan
from nstlib.settings import StylizeConfig, check_style_counts

CLI_DIR = Path(cli.__file__).parent
#: The package's modules, each importing only those before it (``__init__`` all of them).
ORDER = ["errors", "signals", "parser", "output", "inputs", "runs", "commands", "__init__"]


def test_every_cli_module_is_under_300_lines():
    lengths = {path.name: len(path.read_text().splitlines())
               for path in CLI_DIR.glob("*.py")}
    assert {f"{name}.py" for name in ORDER} <= set(lengths)
    assert all(n < 300 for n in lengths.values()), lengths


def test_cli_modules_import_one_way():
    for path in CLI_DIR.glob("*.py"):
        if path.stem == "__main__":
            continue
        assert path.stem in ORDER, f"{path.name}: add it to ORDER"
        imported = {node.module.rsplit(".", 1)[-1]
                    for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("nstlib.cli.")}
        later = {m for m in imported if ORDER.index(m) >= ORDER.index(path.stem)}
        assert not later, f"{path.name} imports {later}, which come after it"


def test_the_cli_has_no_copy_of_the_library_checks():
    # The size, pool and style-count rules and their messages live in plan.py, vgg_layers.py
    # and settings.py; the command line only spells the setting as its flag.
    for path in CLI_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        strings = " ".join(node.value for node in ast.walk(tree)
                           if isinstance(node, ast.Constant) and isinstance(node.value, str)
                           and id(node) not in docs)
        names = ({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
                 | {node.name for node in ast.walk(tree) if isinstance(node, ast.alias)})
        for fragment in ("is too small", "too many", "weights for", "style image(s)", "_pool"):
            assert fragment not in strings, f"{path.name} says {fragment!r}"
        for name in ("deepest_layer", "layers_up_to", "min_input_side", "pyramid_hws",
                     "blend_weights"):
            assert name not in names, f"{path.name} uses {name}"


FAST = ["--size", "32", "--steps", "3", "--weights", "random", "--no-progress",
        "--content-layers", "block2_conv1", "--style-layers", "block1_conv1,block2_conv1"]
FAST_FLAT = {"size": 32, "steps": 3, "weights": "random", "content_layers": ("block2_conv1",),
             "style_layers": ("block1_conv1", "block2_conv1")}


def _library_message(check) -> str:
    with pytest.raises(ConfigError) as info:
        check()
    return str(info.value)


def _size_check(**flat):
    config = StylizeConfig.from_flat(**{**FAST_FLAT, **flat})
    return lambda: make_plan(config, (40, 48), [(32, 32)]).check_sizes()


@pytest.mark.parametrize("extra, check, setting, flag", [
    (["--style-size", "1"], _size_check(style_size=1), "style_size", "--style-size"),
    (["--pyramid-levels", "10"], _size_check(pyramid_levels=10), "pyramid_levels",
     "--pyramid-levels"),
    (["--scales", "1,32"], _size_check(scales=(1, 32)), "scales", "--scales"),
    (["--size", "18", "--content-layers", "block5_conv1"],
     _size_check(size=18, content_layers=("block5_conv1",)), "size", "--size"),
    (["--style", "stripes", "--style-blend", "1,2,3"],
     lambda: check_style_counts(2, (1, 2, 3)), "style_blend", "--style-blend"),
    (["--style", "stripes", "--style-mask", "m.png"],
     lambda: check_style_counts(2, None, 1), "style_masks", "--style-mask"),
])
def test_cli_size_blend_and_mask_errors_are_the_library_message(extra, check, setting, flag,
                                                                 tmp_path, capsys):
    rng = np.random.default_rng(0)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    message = _library_message(check)
    assert setting in message.split(" ")[:2]
    positional = [content] if "--style" in extra else [content, style]
    code, _, err = run(["stylize", *positional, *(["--style", style] if "--style" in extra
                                                   else []),
                        "-o", tmp_path / "o.png", *FAST, *extra], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert err == f"nst: error: {message.replace(setting, flag, 1)}\n"
    assert not (tmp_path / "o.png").exists()
