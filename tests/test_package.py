"""The package itself: importing it has no side effects; every public name resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import nstlib

_PROBE = """
import json, os, sys
before = dict(os.environ)
import nstlib
print(json.dumps({"tensorflow": "tensorflow" in sys.modules,
                  "environ_changed": dict(os.environ) != before}))
"""


def test_import_has_no_side_effects():
    """No TensorFlow import, no environment change, nothing on stderr (fd 2 untouched)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(proc.stdout) == {"tensorflow": False, "environ_changed": False}
    assert proc.stderr == ""


def test_public_names_are_sorted_and_resolve():
    assert nstlib.__all__ == sorted(nstlib.__all__)
    for name in nstlib.__all__:
        assert getattr(nstlib, name) is not None, name
    assert set(nstlib.__all__) <= set(dir(nstlib))


def test_version_comes_from_the_package_metadata():
    assert nstlib.__version__ == metadata.version("nstlib")
    from nstlib.reproducibility import environment_record

    assert environment_record()["nstlib"] == nstlib.__version__


def test_moved_names_are_the_objects_of_their_new_modules():
    from nstlib import pyramids, receptive_fields, update_rules, vgg_weights, wct

    assert nstlib.image_pyramid is pyramids.image_pyramid
    assert nstlib.measure_receptive_field is receptive_fields.measure_receptive_field
    assert nstlib.run_update_rule is update_rules.run_update_rule
    assert nstlib.WeightsUnavailableError is vgg_weights.WeightsUnavailableError
    assert nstlib.wct_stylize is wct.wct_stylize
    assert nstlib.wct is wct  # the module; the transform is nstlib.wct.wct


def test_the_package_refers_only_to_files_in_the_repository():
    """Every repository path (``folder/file.ext``), notebook and top-level Markdown file that
    a docstring or comment of nstlib names exists (outputs such as results.md aside)."""
    import re
    import subprocess
    from pathlib import Path

    root = Path(nstlib.__file__).resolve().parent.parent
    # the repository's folders, not what a run left in the checkout (out/ is ignored)
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    folders = ({line.split("/")[0] for line in tracked.stdout.splitlines() if "/" in line}
               if tracked.returncode == 0 else {p.name for p in root.iterdir() if p.is_dir()})
    named, missing = set(), set()
    for source in (root / "nstlib").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for path in re.findall(r"(?<![\w/])([a-z_]+/[\w./-]+\.(?:py|md|yaml|ipynb|json))\b",
                               text):
            if path.split("/")[0] in folders:
                named.add(path)
        named.update(f"notebooks/{nb}" for nb in re.findall(r"\b(\d\d_\w+\.ipynb)\b", text))
        named.update(re.findall(r"\b([A-Z]+\.md)\b", text))
    missing = {path for path in named if not (root / path).exists()}
    assert len(named) > 10 and "README.md" in named
    assert not missing, sorted(missing)


def test_nothing_in_the_repository_reads_a_run_record_by_its_old_name():
    """A result's run record is ``record``; its old name (``config``, now a deprecated
    alias) appears only in the tests of that alias. "config" stays the name of settings:
    ``StylizeConfig``, a ``RunPlan``'s ``config``, a grid ``RunSpec``'s ``config`` (its
    settings as a dict, read by receivers named ``spec``, ``*_spec`` or ``specs[i]``).

    Searched: nstlib/, tests/, benchmarks/, tools/, examples/, README.md and the code
    cells of notebooks/*.ipynb."""
    import re
    from pathlib import Path

    root = Path(nstlib.__file__).resolve().parent.parent
    old_name = re.compile(r"\bresult\.config\b"  # the result, under any use
                          r"|\.config(?:\[|\.get\(|\.update\()")  # anything's, as a dict
    settings_receiver = re.compile(r"(?<![\w.])(?:\w*spec|specs\[\w+\])$")
    alias_tests = re.compile(r"^def test_the_old_config_name_of_the_record\w*\(.*?(?=^\S|\Z)",
                             re.M | re.S)

    def uses(text):
        return [text[max(match.start() - 30, 0):match.end()].split("\n")[-1]
                for match in old_name.finditer(text)
                if match.group(0).startswith("result")
                or not settings_receiver.search(text[:match.start()])]

    found, searched = {}, 0
    files = [*(root / "nstlib").rglob("*.py"), *(root / "tests").rglob("*.py"),
             *(root / "benchmarks").rglob("*.py"), *(root / "tools").rglob("*.py"),
             *(root / "examples").rglob("*.*"), root / "README.md"]
    for path in files:
        text = alias_tests.sub("", path.read_text(encoding="utf-8"))
        searched += 1
        if uses(text):
            found[str(path.relative_to(root))] = uses(text)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells
                         if cell["cell_type"] == "code")
        searched += 1
        if uses(code):
            found[str(path.relative_to(root))] = uses(code)
    assert searched > 50
    assert not found, found
