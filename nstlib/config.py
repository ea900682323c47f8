"""Environment switches read once: quick mode, where the repository's data lives, and the
names of the weights' environment variables.

Everything that depends on the environment is read here and nowhere else, so a
notebook, a test and the CLI agree on what "quick" means. These are not a run's settings
(``nstlib.settings.StylizeConfig``) nor a run's record (the ``record`` dict of a result):
the module keeps its name because every notebook's first cell reads
``from nstlib.config import QUICK``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_QUICK_ON, _QUICK_OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _read_quick(value: str) -> bool:
    """``NST_QUICK`` as a yes/no switch; anything else is off, said in one stderr line.

    A warning rather than an error: a notebook must still run (in full mode), and the
    ``nst`` command shows the same line before its own output.
    """
    word = value.strip().lower()
    if word in _QUICK_ON:
        return True
    if word not in _QUICK_OFF:
        print(f"nstlib: NST_QUICK={value!r} is not understood (use 1/true/yes/on or "
              f"0/false/no/off); quick mode is OFF", file=sys.stderr)
    return False


#: True when ``NST_QUICK`` is set to a truthy value ("1", "true", "yes", "on"). Notebooks
#: use it in their first code cell (``SIZE = 64 if QUICK else 256``); CI runs with it on.
QUICK: bool = _read_quick(os.environ.get("NST_QUICK", ""))

#: Root of the source checkout (the folder that holds ``nstlib/`` and ``data/``).
REPO_ROOT: Path = Path(__file__).resolve().parent.parent

#: Bundled sample images; ``NSTLIB_DATA`` overrides it (e.g. for a non-editable install).
DATA_DIR: Path = Path(os.environ.get("NSTLIB_DATA", REPO_ROOT / "data"))

#: Environment variable naming a local VGG19 notop ``.h5`` file (ImageNet weights).
WEIGHTS_ENV_VAR = "NSTLIB_VGG19_WEIGHTS"
#: Environment variable naming a local VGG16 notop ``.h5`` file (ImageNet weights).
VGG16_WEIGHTS_ENV_VAR = "NSTLIB_VGG16_WEIGHTS"


def quick(quick_value, full_value):
    """Pick a value by mode: ``quick(64, 256)`` is 64 under ``NST_QUICK=1``, else 256."""
    return quick_value if QUICK else full_value
