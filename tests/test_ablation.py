"""Ablation grids: declaration and ids, resumable runs on Dask and local processes, the table."""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from nstlib import ablation, settings
from nstlib.settings import StylizeConfig, option

FAST = {"content": "chelsea", "style": "brushstrokes", "size": 32, "steps": 3,
        "weights": "random", "content_layers": ["block2_conv1"],
        "style_layers": ["block1_conv1", "block2_conv1"]}
EVALUATE = {"weights": "random", "content_layers": ["block2_conv1"],
            "style_layers": ["block1_conv1", "block2_conv1"]}
GRID4 = {"name": "four", "fixed": FAST, "axes": {"optimizer": ["adam", "rmsprop"],
                                                  "learning_rate": [0.01, 0.03]},
         "evaluate": EVALUATE}


def _sha(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _csv_rows(out_dir) -> list[dict]:
    with open(out_dir / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


class _NoRuns:
    """A backend that fails the test if asked to run anything."""

    def submit(self, config, out_dir, base_dir):
        raise AssertionError(f"a complete run was executed again: {config}")


# ----------------------------------------------------------------------------- declaration


def test_yaml_grid_expands_to_the_product_plus_extra_runs(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID4, "runs": [{"optimizer": "lbfgs", "steps": 2}]},
                                  sort_keys=False))
    grid = ablation.load_grid(path)
    specs = grid.expand()
    assert [(s.swept["optimizer"], s.swept["learning_rate"]) for s in specs[:4]] == [
        ("adam", 0.01), ("adam", 0.03), ("rmsprop", 0.01), ("rmsprop", 0.03)]
    assert specs[4].config["optimizer"] == "lbfgs" and specs[4].config["steps"] == 2
    assert grid.swept_keys == ["optimizer", "learning_rate", "steps"]
    assert len({s.run_id for s in specs}) == 5


def test_config_holds_every_setting_and_the_id_hashes_only_non_defaults():
    spec = ablation.load_grid(GRID4).expand()[1]  # adam, learning_rate 0.03
    fields = StylizeConfig.flat_fields()
    assert set(spec.config) == set(fields) | {"content", "style", "evaluate"}
    assert spec.config["tv_weight"] == fields["tv_weight"].default  # defaults filled in
    assert spec.config["optimizer"] == "adam" and spec.config["size"] == 32
    described = {"schema": 2, "content": "chelsea", "style": "brushstrokes",
                 "config": {"size": 32, "steps": 3, "weights": "random",
                            "content_layers": ["block2_conv1"],
                            "style_layers": ["block1_conv1", "block2_conv1"],
                            "learning_rate": 0.03},  # optimizer adam is the default
                 "evaluate": EVALUATE}  # every key differs from EVALUATE_DEFAULTS
    assert ablation.run_description(spec.config) == described
    assert spec.run_id == _sha(described)
    no_metrics = ablation.load_grid({**GRID4, "evaluate": None}).expand()[1]
    assert no_metrics.run_id == _sha({k: v for k, v in described.items() if k != "evaluate"})


def test_a_new_setting_with_a_default_changes_no_id(monkeypatch):
    before = ablation.load_grid(GRID4).expand()

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Extended(StylizeConfig):  # StylizeConfig as it would be with one more field
        future_knob: float = option(0.5, "a setting added after these runs")

    monkeypatch.setattr(settings, "StylizeConfig", Extended)
    monkeypatch.setattr(ablation.grid, "StylizeConfig", Extended)
    after = ablation.load_grid(GRID4).expand()
    assert all(spec.config["future_knob"] == 0.5 for spec in after)  # recorded...
    assert [s.run_id for s in after] == [s.run_id for s in before]  # ...but not hashed
    changed = ablation.load_grid({**GRID4, "fixed": {**FAST, "future_knob": 0.7}}).expand()
    assert not {s.run_id for s in changed} & {s.run_id for s in before}


def test_ids_are_stable_and_depend_only_on_the_settings():
    a = ablation.load_grid(GRID4).expand()
    reordered = {"evaluate": EVALUATE, "axes": {"optimizer": ["adam", "rmsprop"],
                                                "learning_rate": [0.01, 0.03]},
                 "fixed": dict(reversed(list(FAST.items())))}
    b = ablation.load_grid(reordered).expand()
    assert [s.run_id for s in a] == [s.run_id for s in b]
    # writing a default explicitly is the same run; changing a value is another one
    explicit = ablation.load_grid({**GRID4, "fixed": {**FAST, "init": "content"}}).expand()
    assert [s.run_id for s in explicit] == [s.run_id for s in a]
    other = ablation.load_grid({**GRID4, "fixed": {**FAST, "seed": 1}}).expand()
    assert not {s.run_id for s in other} & {s.run_id for s in a}


def test_yaml_exponent_strings_become_numbers(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("fixed: {content: chelsea, style: mosaic, learning_rate: 1e-2}\n"
                    "axes: {gram_shrinkage: [none, 3e-1]}\n")  # both strings in YAML
    first_spec, second_spec = ablation.load_grid(path).expand()
    assert first_spec.config["learning_rate"] == 0.01
    assert isinstance(first_spec.config["learning_rate"], float)
    assert first_spec.config["gram_shrinkage"] is None
    assert second_spec.config["gram_shrinkage"] == 0.3  # float | str | None: a number first


@pytest.mark.parametrize("key, value, expected", [
    ("gram_shrinkage", "3e-1", 0.3),
    ("gram_shrinkage", "ledoit-wolf", "ledoit-wolf"),
    ("gram_shrinkage", "none", None),
    ("learning_rate", None, None),
    ("learning_rate", "NONE", None),
    ("content_weight", 2, 2.0),
    ("steps", "10", 10),  # a quoted number is still the number
    ("steps", 10.0, 10),
    ("scales", [16, "32"], [16, 32]),
    ("size", " 48 ", 48),
    ("style_layers", ["block1_conv1", "block3_conv1"], ["block1_conv1", "block3_conv1"]),
    ("style_layers", "block1_conv1,block3_conv1", ["block1_conv1", "block3_conv1"]),
    ("deterministic", "false", False),
    ("optimizer", "LBFGS", "lbfgs"),
])
def test_settings_are_coerced_by_their_field_type(key, value, expected):
    config = ablation.load_grid({"fixed": {"content": "chelsea", "style": "mosaic",
                                           key: value}}).expand()[0].config
    assert config[key] == expected and type(config[key]) is type(expected)
    assert config == ablation.load_grid({"fixed": {"content": "chelsea", "style": "mosaic",
                                                   key: expected}}).expand()[0].config


@pytest.mark.parametrize("key, value, fragment", [
    ("steps", "ten", "steps must be a whole number, got 'ten'"),
    ("steps", 2.5, "steps must be a whole number"),
    ("steps", True, "steps must be a whole number"),
    ("size", "big", "size must be a whole number"),
    ("size", [1, 2], "size must be a whole number, got [1, 2]"),  # a list for an int
    ("content_layers", 5, "content_layers must be a list, got 5"),  # an int for a list
    ("learning_rate", "fast", "learning_rate must be a number, got 'fast'"),
    ("content_weight", float("nan"), "content_weight must be a finite number"),
    ("gram_shrinkage", 2.0, "gram_shrinkage must be at most 1"),
    ("optimizer", "adamw", "optimizer must be one of"),
    ("style_layers", ["block1_conv1", "block9_conv9"], "block9_conv9"),
    ("deterministic", "maybe", "deterministic must be true or false"),
])
def test_a_bad_value_fails_when_the_grid_loads_naming_the_run_and_key(key, value, fragment,
                                                                      tmp_path):
    good = {"steps": 3, "size": 32, "learning_rate": 0.1, "content_weight": 1.0,
            "gram_shrinkage": 0.5, "optimizer": "sgd", "style_layers": ["block1_conv1"],
            "content_layers": ["block1_conv1"], "deterministic": False}[key]
    swept = {"name": "bad", "fixed": FAST, "axes": {"seed": [0, 1]},
             "runs": [{key: good}, {key: value, "seed": 2}]}
    fixed = {"fixed": {**FAST, key: value}, "axes": {"seed": [0, 1]}}
    for grid, where in ((swept, f"run 4 (seed=2, {key}={ablation.format_value(value)})"),
                        (fixed, "run 1 (seed=0)")):
        path = tmp_path / "grid.yaml"
        path.write_text(yaml.safe_dump(grid))
        with pytest.raises(ablation.GridError) as info:
            ablation.load_grid(path)
        message = str(info.value)
        assert message.startswith(f"{path}: {where}: ") and "\n" not in message
        assert fragment in message and key in message.removeprefix(f"{path}: {where}: ")
        with pytest.raises(ablation.GridError):  # run_grid checks before it writes anything
            ablation.run_grid(grid, tmp_path / "out", backend=_NoRuns(), progress=False)
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("data, fragment", [
    ({"fixed": FAST, "axes": {"optimiser": ["adam"]}}, "did you mean 'optimizer'"),
    ({"fixed": {**FAST, "colour": 1}}, "unknown setting 'colour' in fixed"),
    ({"fixed": {**FAST, "colour": 1}}, "valid settings: content, style, size"),
    ({"fixed": FAST, "runs": [{"callbacks": 1}]}, "unknown setting 'callbacks' in runs[1]"),
    ({"fixed": FAST, "axis": {}}, "unknown key(s) 'axis'"),
    ({"fixed": FAST, "axes": {"seed": 3}}, "axis 'seed' must be a non-empty list"),
    ({"fixed": FAST, "axes": {"seed": []}}, "axis 'seed' must be a non-empty list"),
    ({"fixed": FAST, "axes": {"size": [16, 32]}}, "'size' is both fixed and an axis"),
    ({"fixed": {"content": "chelsea"}}, "every run needs 'style'"),
    ({"fixed": FAST, "evaluate": {"layers": []}}, "unknown evaluate setting(s) layers"),
    (["not", "a", "mapping"], "a grid must be a mapping"),
])
def test_invalid_grids_raise_one_clear_error(data, fragment):
    with pytest.raises(ablation.GridError) as info:
        ablation.load_grid(data)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- results folder


def _fake_payload(spec, status="completed", png=b"\x89PNG fake"):
    record = {"run_id": spec.run_id, "config": spec.config, "status": status,
              "final": {"step": 3, "total": 1.5}, "metrics": {"ssim": 0.5},
              "error": None if status == "completed" else "ValueError: boom"}
    return {"record": record, "png": png if status == "completed" else None}


def test_completeness_needs_a_completed_record_and_its_image(tmp_path):
    first, second = ablation.load_grid(GRID4).expand()[:2]
    assert not ablation.is_complete(tmp_path, first.run_id)
    ablation.persist(_fake_payload(first), tmp_path)
    ablation.persist(_fake_payload(second, "failed"), tmp_path)
    assert ablation.is_complete(tmp_path, first.run_id)
    assert not ablation.is_complete(tmp_path, second.run_id)  # failed runs are retried
    ablation.image_path(tmp_path, first.run_id).unlink()
    assert not ablation.is_complete(tmp_path, first.run_id)
    assert not list((tmp_path / "runs").glob("*.tmp"))


@pytest.mark.parametrize("text, problem", [
    ("", "is not valid JSON (truncated or damaged: Expecting value: line 1 column 1 (char 0))"),
    ('"completed"', "holds a string, not a run record (a JSON object)"),
    ('{"run_id": "0123456789", "status": "completed"}',
     "is the record of run '0123456789', not of {rid}"),
    ('{"run_id": "{rid}", "status": "done"}', "has no valid status (got 'done')"),
    ('{"run_id": "{rid}", "status": "failed", "final": [1]}',
     "has a 'final' that is not a JSON object"),
    ('{"run_id": "{rid}", "status": "completed", "final": {"total": "low"}}',
     "says completed but has no final loss"),
])
def test_a_damaged_record_counts_as_none_and_says_why(text, problem, tmp_path):
    spec = ablation.load_grid(GRID4).expand()[0]
    ablation.persist(_fake_payload(spec), tmp_path)  # a complete run, with its image
    path = ablation.record_path(tmp_path, spec.run_id)
    path.write_text(text.replace("{rid}", spec.run_id))
    assert ablation.record_problem(tmp_path, spec.run_id) == (
        f"{path} {problem.replace('{rid}', spec.run_id)}")
    assert ablation.read_record(tmp_path, spec.run_id) is None
    assert not ablation.is_complete(tmp_path, spec.run_id)  # so it is run again
    result = ablation.collect(ablation.load_grid(GRID4), tmp_path)
    assert result.rows[0]["status"] == "pending" and list(result.damaged) == [spec.run_id]
    path.unlink()
    assert ablation.record_problem(tmp_path, spec.run_id) is None  # missing: not damaged


def test_table_rows_round_trip_through_csv(tmp_path):
    grid = ablation.load_grid({**GRID4, "runs": [{"style_layers": ["block1_conv1"]}]})
    specs = grid.expand()
    ablation.persist(_fake_payload(specs[0]), tmp_path)
    ablation.persist(_fake_payload(specs[4], "failed"), tmp_path)
    result = ablation.collect(grid, tmp_path)
    rows = _csv_rows(tmp_path)
    assert [r["run_id"] for r in rows] == [s.run_id for s in specs]
    assert list(rows[0])[:5] == ["run_id", "optimizer", "learning_rate", "style_layers",
                                 "status"]
    assert [r["status"] for r in rows] == ["completed", "pending", "pending", "pending",
                                          "failed"]
    assert float(rows[0]["final_total"]) == 1.5 and float(rows[0]["ssim"]) == 0.5
    assert json.loads(rows[4]["style_layers"]) == ["block1_conv1"]
    assert rows[4]["error"] == "ValueError: boom"
    assert result.failed == [specs[4].run_id]


# ----------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def dask_results(dask_client, tmp_path_factory):
    out = tmp_path_factory.mktemp("dask")
    return ablation.run_grid(GRID4, out, scheduler=dask_client.scheduler.address,
                             progress=False), out


def test_dask_grid_writes_every_record_and_row(dask_results):
    result, out = dask_results
    specs = ablation.load_grid(GRID4).expand()
    assert sorted(result.executed) == sorted(s.run_id for s in specs)
    rows = {r["run_id"]: r for r in _csv_rows(out)}
    assert set(rows) == {s.run_id for s in specs}
    for spec in specs:
        record = json.loads(ablation.record_path(out, spec.run_id).read_text())
        assert record["status"] == "completed" and record["config"] == spec.config
        assert record["optimizer"] == spec.swept["optimizer"]
        assert record["learning_rate"] == spec.swept["learning_rate"]
        assert record["weights_source"] == "random" and record["seed"] == 0
        assert record["environment"]["tensorflow"] and record["host"]
        assert len(record["history"]["total"]) == FAST["steps"] + 1
        assert ablation.image_path(out, spec.run_id).is_file()
        row = rows[spec.run_id]
        assert row["status"] == "completed" and row["optimizer"] == spec.swept["optimizer"]
        assert float(row["learning_rate"]) == spec.swept["learning_rate"]
        assert float(row["final_total"]) == record["final"]["total"]
        assert float(row["ssim"]) == record["metrics"]["ssim"]
        assert 0 < float(row["style_distance"]) and -1 <= float(row["ssim"]) <= 1
        judged = record["metrics"]  # the network-free judge's columns (nstlib.judge)
        assert judged["judge_style"] == pytest.approx(judged["judge_color"]
                                                      + judged["judge_texture"], rel=1e-12)
        assert judged["judge_color"] > 0 and -1 <= judged["judge_content"] <= 1
        assert float(row["judge_style"]) == judged["judge_style"]
    # a larger learning rate moves the image further from the content
    by = {(r["optimizer"], float(r["learning_rate"])): r for r in rows.values()}
    assert float(by["adam", 0.03]["content_distance"]) > float(by["adam", 0.01]["content_distance"])


def test_rerunning_a_finished_grid_executes_nothing(dask_results, dask_client):
    result, out = dask_results
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    again = ablation.run_grid(GRID4, out, scheduler=dask_client.scheduler.address,
                              progress=False)
    assert again.executed == [] and sorted(again.skipped) == sorted(result.executed)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps
    assert [r["status"] for r in again.rows] == ["completed"] * 4


@pytest.fixture(scope="module")
def local_backend():
    with ablation.LocalBackend(workers=2) as backend:
        yield backend


def test_a_failing_run_is_recorded_and_the_others_finish(local_backend, tmp_path):
    # valid settings that fail only when run: a style file that is not an image (weights
    # too large for float32 are now refused when the grid loads) and one that does not exist
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    grid = {"fixed": FAST, "evaluate": EVALUATE,
            "runs": [{}, {"style": str(corrupt)}, {"style": "no_such_style.png"}]}
    result = ablation.run_grid(grid, tmp_path / "out", backend=local_backend, progress=False)
    out = tmp_path / "out"
    assert [r["status"] for r in result.rows] == ["completed", "failed", "failed"]
    ok, bad, missing = (result.record(r["run_id"]) for r in result.rows)
    assert ok["final"]["total"] > 0 and ablation.image_path(out, ok["run_id"]).is_file()
    assert bad["error"].startswith("ImageError:") and "corrupt.png" in bad["error"]
    assert bad["config"]["style"] == str(corrupt)
    assert missing["error"] == "ImageError: image not found: no_such_style.png"
    for failed in (bad, missing):
        assert not ablation.image_path(out, failed["run_id"]).exists()
    rows = _csv_rows(out)
    assert [r["status"] for r in rows] == ["completed", "failed", "failed"]
    assert "no_such_style.png" in rows[2]["error"]
    assert sorted(result.failed) == sorted([bad["run_id"], missing["run_id"]])


def test_local_processes_give_the_same_table_as_dask(local_backend, dask_results, tmp_path):
    dask_result, _ = dask_results
    local = ablation.run_grid(GRID4, tmp_path, backend=local_backend, progress=False)
    assert [r["run_id"] for r in local.rows] == [r["run_id"] for r in dask_result.rows]
    for ours, theirs in zip(local.rows, dask_result.rows, strict=True):
        for key in ("final_total", "final_content", "final_style", "final_tv", "ssim",
                    "style_distance", "content_distance"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key


def test_every_example_grid_is_valid():
    expected = {"optimizers": 10, "style_layers": 5, "weights_alpha_beta": 8, "pyramids": 3,
                "shrinkage": 3, "controls": 5}
    examples = Path(__file__).resolve().parent.parent / "examples"
    for name, n_runs in expected.items():
        specs = ablation.load_grid(examples / f"{name}.yaml").expand()
        assert len(specs) == n_runs, name
        assert all(spec.config["weights"] == "auto" for spec in specs)


def test_the_offline_recipe_grid_ends_with_the_random_recipe():
    """examples/offline_recipe.yaml: the ImageNet recipe on random weights, one run per
    setting where the random recipe differs, two rejected settings, then the whole recipe."""
    from nstlib.settings import RECIPES

    examples = Path(__file__).resolve().parent.parent / "examples"
    specs = ablation.load_grid(examples / "offline_recipe.yaml").expand()
    assert all(spec.config["weights"] == "random" for spec in specs)
    flat = [{k: tuple(v) if isinstance(v, list) else v for k, v in spec.config.items()}
            for spec in specs]
    imagenet, random = RECIPES["imagenet"], RECIPES["random"]
    assert all(flat[0][k] == v for k, v in imagenet.items())
    assert all(flat[-1][k] == v for k, v in random.items())
    changed = {k for k in imagenet if imagenet[k] != random[k]}
    single = [{k for k in imagenet if run[k] != imagenet[k]} for run in flat[1:-1]]
    assert changed == {k for one in single if len(one) == 1 for k in one}


# ----------------------------------------------------------------------------- old results folders


PRE_REDESIGN = Path(__file__).resolve().parent / "data" / "pre_redesign" / "ablation"


def test_a_folder_written_before_the_config_redesign_resumes_without_running(tmp_path):
    out = tmp_path / "ablation"
    shutil.copytree(PRE_REDESIGN, out)
    declared = yaml.safe_load((out / "grid.yaml").read_text())
    declared.pop("base_dir")
    before = {p.name: p.read_bytes() for p in (out / "runs").iterdir()}
    result = ablation.run_grid(declared, out, backend=_NoRuns(), progress=False)
    assert result.executed == [] and len(result.skipped) == 3
    assert [r["status"] for r in result.rows] == ["completed"] * 3
    rows = _csv_rows(out)
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert [r["optimizer"] for r in rows] == ["adam", "sgd", "adam"]
    assert all((out / "runs" / r["image"]).is_file() for r in rows)
    assert {p.name: p.read_bytes() for p in (out / "runs").iterdir()} == before


def test_legacy_ids_are_the_ids_the_old_code_wrote():
    declared = yaml.safe_load((PRE_REDESIGN / "grid.yaml").read_text())
    declared.pop("base_dir")
    specs = ablation.load_grid(declared).expand()
    stored = sorted(p.stem for p in (PRE_REDESIGN / "runs").glob("*.json"))
    assert sorted(s.legacy_id for s in specs) == stored
    for spec in specs:  # the old id hashed the config each old record holds
        record = json.loads((PRE_REDESIGN / "runs" / f"{spec.legacy_id}.json").read_text())
        assert _sha(record["config"]) == spec.legacy_id != spec.run_id
    # YAML's "1e-2" was read as a float by the old code too; a setting it lacked: no old id
    grid = {"fixed": {"content": "chelsea", "style": "mosaic"}}
    as_text = ablation.load_grid({"fixed": {**grid["fixed"], "learning_rate": "1e-2"}})
    as_float = ablation.load_grid({"fixed": {**grid["fixed"], "learning_rate": 0.01}})
    assert as_text.expand()[0].legacy_id == as_float.expand()[0].legacy_id is not None
    newer = ablation.load_grid({"fixed": {**grid["fixed"], "conv_impl": "standard"}})
    assert newer.expand()[0].legacy_id is None


def test_only_a_completed_legacy_record_stands_for_a_run(tmp_path):
    specs = ablation.load_grid(GRID4).expand()
    old = [dataclasses.replace(s, run_id=s.legacy_id) for s in specs[:2]]
    ablation.persist(_fake_payload(old[0]), tmp_path)
    ablation.persist(_fake_payload(old[1], "failed"), tmp_path)
    stored = ablation.stored_specs(ablation.load_grid(GRID4), tmp_path)
    assert [s.run_id for s in stored] == [old[0].run_id] + [s.run_id for s in specs[1:]]
    ablation.persist(_fake_payload(specs[0]), tmp_path)  # once the new id is complete, it wins
    assert ablation.stored_specs(ablation.load_grid(GRID4), tmp_path)[0].run_id == specs[0].run_id


# ----------------------------------------------------------------------------- claims


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(out_dir, rid, *, host=None, pid=None, age=0.0, text=None):
    """A lock file as another runner would have left it, ``age`` seconds old."""
    path = ablation.lock_path(out_dir, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        text = json.dumps({"pid": pid, "host": host or socket.gethostname(),
                           "started": time.time() - age, "token": "theirs"})
    path.write_text(text)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_a_claim_is_exclusive_and_only_its_owner_releases_it(tmp_path):
    token = ablation.claim(tmp_path, "r1")
    held = json.loads(ablation.lock_path(tmp_path, "r1").read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert held["token"] == token and abs(held["started"] - time.time()) < 60
    assert ablation.claim_is_live(tmp_path, "r1")
    assert ablation.claim(tmp_path, "r1") is None  # held (by a live process: this one)
    ablation.release_claim(tmp_path, "r1", "not-the-token")
    assert ablation.lock_path(tmp_path, "r1").exists()
    ablation.release_claim(tmp_path, "r1", token)
    assert not ablation.lock_path(tmp_path, "r1").exists()
    assert ablation.read_claim(tmp_path, "r1") is None
    assert ablation.claim(tmp_path, "r1") is not None  # free again


STALE = ablation.STALE_CLAIM_SECONDS


@pytest.mark.parametrize("lock, live", [
    ({"pid": "parent"}, True),  # this host, a live process
    ({"pid": "dead"}, False),  # this host, its process is gone: taken over at once
    ({"pid": "parent", "age": STALE + 60}, False),  # alive but never refreshed: pid reused
    ({"pid": 1, "host": "elsewhere"}, True),  # another host: trusted while fresh...
    ({"pid": 1, "host": "elsewhere", "age": STALE + 60}, False),  # ...until stale
    ({"text": ""}, True),  # unreadable (its runner is still writing it): trusted...
    ({"text": "{not json", "age": STALE + 60}, False),  # ...until stale
])
def test_stale_claims_are_taken_over_and_live_ones_kept(lock, live, tmp_path):
    pid = {"parent": os.getppid(), "dead": _dead_pid()}.get(lock.get("pid"), lock.get("pid"))
    path = _write_lock(tmp_path, "r1", **{**lock, "pid": pid})
    before = path.read_text()
    assert ablation.claim_is_live(tmp_path, "r1") is live
    token = ablation.claim(tmp_path, "r1")
    if live:
        assert token is None and path.read_text() == before
    else:
        ours = json.loads(path.read_text())
        assert token is not None and (ours["pid"], ours["token"]) == (os.getpid(), token)
    assert not path.with_suffix(".takeover").exists()


def test_refreshing_keeps_a_claim_live(tmp_path):
    path = _write_lock(tmp_path, "r1", host="elsewhere", pid=1, age=STALE - 5)
    assert ablation.claim_is_live(tmp_path, "r1")
    assert not ablation.claim_is_live(tmp_path, "r1", stale_seconds=STALE - 10)
    ablation.refresh_claim(tmp_path, "r1")
    assert time.time() - path.stat().st_mtime < 60
    assert ablation.claim_is_live(tmp_path, "r1", stale_seconds=STALE - 10)


def test_a_takeover_in_progress_is_respected(tmp_path):
    _write_lock(tmp_path, "r1", pid=_dead_pid())
    guard = ablation.lock_path(tmp_path, "r1").with_suffix(".takeover")
    guard.write_text("")
    assert ablation.claim(tmp_path, "r1") is None  # another runner is taking it over
    os.utime(guard, (time.time() - 120,) * 2)  # ... or died doing so: the guard goes
    assert ablation.claim(tmp_path, "r1") is None and not guard.exists()
    assert ablation.claim(tmp_path, "r1") is not None


def test_racing_runners_leave_exactly_one_owner_of_a_stale_claim(tmp_path):
    _write_lock(tmp_path, "r1", pid=_dead_pid())
    start = threading.Barrier(8)

    def contend():
        start.wait()
        return ablation.claim(tmp_path, "r1")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        tokens = [f.result() for f in [pool.submit(contend) for _ in range(8)]]
    winners = [t for t in tokens if t is not None]
    assert len(winners) == 1
    assert json.loads(ablation.lock_path(tmp_path, "r1").read_text())["token"] == winners[0]


# ----------------------------------------------------------------------------- runner: claims, stop


class _InstantBackend:
    """Runs nothing: every submitted run "completes" at once with a fake payload.

    Checks that each run is claimed by this process when it is submitted, and records
    the submitted ids, the most runs in flight and the runs cancelled. ``on_wait(n)`` is
    called before the n-th wait (from 1), e.g. to interrupt.
    """

    def __init__(self, slots=1, on_wait=None, on_submit=None):
        self.slots, self.on_wait, self.on_submit = slots, on_wait, on_submit
        self.submitted, self.most, self.waits, self.cancelled = [], 0, 0, None

    def submit(self, config, out_dir, base_dir):
        rid = ablation.run_id(config)
        held = ablation.read_claim(out_dir, rid)
        assert held and held["pid"] == os.getpid(), f"{rid} sent to a worker unclaimed"
        self.submitted.append(rid)
        if self.on_submit:
            self.on_submit(rid)
        future = concurrent.futures.Future()
        future.set_result(_fake_payload(ablation.RunSpec(rid, config, {})))
        return future

    def wait_first(self, futures):
        self.waits += 1
        self.most = max(self.most, len(futures))
        if self.on_wait:
            self.on_wait(self.waits)
        return set(futures)

    def cancel(self, futures):
        self.cancelled = list(futures)


def _locks(out_dir) -> list[str]:
    return sorted(p.name for p in (Path(out_dir) / "runs").glob("*.lock"))


def test_runs_are_claimed_as_slots_free_up_and_released_when_done(tmp_path):
    backend = _InstantBackend(slots=2)
    result = ablation.run_grid(GRID4, tmp_path, backend=backend, progress=False)
    assert sorted(backend.submitted) == sorted(s.run_id for s in result.specs)
    assert backend.most == 2  # never more runs claimed than can execute
    assert sorted(result.executed) == sorted(backend.submitted) and result.left == []
    assert [r["status"] for r in result.rows] == ["completed"] * 4
    assert _locks(tmp_path) == []


def test_runs_another_runner_holds_or_finished_are_left_to_it(tmp_path):
    specs = ablation.load_grid(GRID4).expand()
    held, finished, taken_over = specs[1].run_id, specs[2].run_id, specs[3].run_id
    _write_lock(tmp_path, held, pid=os.getppid())  # a live runner on this host
    _write_lock(tmp_path, taken_over, pid=_dead_pid())  # a runner that was killed

    def other_runner_finishes(rid):  # while we run the first run, another runner
        if rid == specs[0].run_id:  # completes the third
            ablation.persist(_fake_payload(specs[2]), tmp_path)

    backend = _InstantBackend(on_submit=other_runner_finishes)
    result = ablation.run_grid(GRID4, tmp_path, backend=backend, progress=False)
    assert backend.submitted == [specs[0].run_id, taken_over]
    assert result.executed == backend.submitted and result.left == [held, finished]
    assert [r["status"] for r in result.rows] == ["completed", "pending", "completed",
                                                  "completed"]
    assert _locks(tmp_path) == [f"{held}.lock"]  # only the other runner's claim remains
    assert ablation.summary_line(result).startswith(
        "4 runs (3 completed, 2 left to another runner); table: ")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_stop_ends_the_workers_keeps_finished_runs_and_releases_claims(how, tmp_path):
    def stop(n):
        if n == 2:  # after the first run has been written
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)  # handled by run_grid, in this thread

    before = signal.getsignal(signal.SIGTERM)
    backend = _InstantBackend(on_wait=stop)
    with pytest.raises(ablation.GridInterrupted) as info:
        ablation.run_grid(GRID4, tmp_path, backend=backend, progress=False)
    stopped = info.value
    assert isinstance(stopped, KeyboardInterrupt)
    assert stopped.signum == (signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before  # restored
    assert backend.submitted == [s.run_id for s in stopped.result.specs[:2]]
    assert len(backend.cancelled) == 1  # the second run, in flight
    assert stopped.result.executed == backend.submitted[:1]
    assert [r["status"] for r in stopped.result.rows] == ["completed"] + ["pending"] * 3
    assert [r["status"] for r in _csv_rows(tmp_path)] == ["completed"] + ["pending"] * 3
    assert _locks(tmp_path) == []
    again = ablation.run_grid(GRID4, tmp_path, backend=_InstantBackend(), progress=False)
    assert again.skipped == backend.submitted[:1] and len(again.executed) == 3


def test_a_killed_worker_fails_only_its_run_and_fresh_workers_take_the_rest(tmp_path):
    class KillTheFirstWorker(ablation.LocalBackend):
        killed = False

        def submit(self, config, out_dir, base_dir):
            future = super().submit(config, out_dir, base_dir)
            if not self.killed:  # as the kernel's out-of-memory killer would
                self.killed = True
                for process in self._executor._processes.values():
                    process.kill()
            return future

    grid = {"fixed": FAST, "evaluate": None, "axes": {"seed": [0, 1]}}
    with KillTheFirstWorker(workers=1) as backend:
        result = ablation.run_grid(grid, tmp_path, backend=backend, progress=False)
    assert [r["status"] for r in result.rows] == ["failed", "completed"]
    lost = result.record(result.rows[0]["run_id"])
    assert lost["error"].startswith("worker lost: BrokenProcessPool")
    assert lost["config"] == result.specs[0].config
    assert _locks(tmp_path) == []


def test_a_grid_can_blend_several_styles_under_masks(local_backend, tmp_path):
    """style may be a list and style_masks a list of mask files (relative to the grid's
    folder); grids without masks keep their ids (style_masks is in a config only if given)."""
    import numpy as np
    from PIL import Image

    height, width = 21, 32  # chelsea at 32 px
    left = np.zeros((height, width), np.uint8)
    left[:, : width // 2] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(255 - left).save(tmp_path / "right.png")
    two = {**FAST, "style": ["brushstrokes", "mosaic"], "style_blend": [0.7, 0.3]}
    masked = ablation.parse_grid({"fixed": {**two, "style_masks": ["left.png", "right.png"]},
                                  "evaluate": EVALUATE}, base_dir=tmp_path)
    plain = ablation.parse_grid({"fixed": two, "evaluate": EVALUATE})
    (spec,), (plain_spec,) = masked.expand(), plain.expand()
    assert spec.config["style_masks"] == ["left.png", "right.png"]
    assert "style_masks" not in plain_spec.config and spec.run_id != plain_spec.run_id
    result = ablation.run_grid(masked, tmp_path / "out", backend=local_backend, progress=False)
    record = result.record(spec.run_id)
    assert record["status"] == "completed", record.get("error")
    assert record["style"] == ["brushstrokes", "mosaic"]
    # mask paths resolved against the grid's folder
    assert record["style_masks"] == [str(tmp_path / "left.png"), str(tmp_path / "right.png")]
    assert record["metrics"]["judge_content"] <= 1


def test_the_worker_measures_against_the_plans_main_style_at_the_plans_size(monkeypatch):
    """The evaluation reads the run's plan: the most heavily weighted style, at the last
    scale's style size, and the content at the result's size; nothing re-derived."""
    from nstlib import judge, metrics, transfer
    from nstlib.ablation import worker

    seen, plans = {}, []
    evaluate, judged, stylize = metrics.evaluate, judge.judge, transfer.stylize

    def spy_evaluate(extractor, image, content, style):
        seen["evaluate_style"] = tuple(style.shape[1:3])
        return evaluate(extractor, image, content, style)

    def spy_judge(image, content, style):
        seen["judge"] = (tuple(content.shape[1:3]), tuple(style.shape[1:3]))
        return judged(image, content, style)

    def spy_stylize(*args, **kwargs):
        result = stylize(*args, **kwargs)
        plans.append(result.plan)
        return result

    monkeypatch.setattr(metrics, "evaluate", spy_evaluate)
    monkeypatch.setattr(judge, "judge", spy_judge)
    monkeypatch.setattr(transfer, "stylize", spy_stylize)
    fixed = {**FAST, "style": ["brushstrokes", "mosaic"], "style_blend": [0.3, 0.7],
             "style_scale": 0.5, "steps": 1}
    (spec,) = ablation.parse_grid({"fixed": fixed, "evaluate": EVALUATE}).expand()
    record = worker.execute_run(spec.config)["record"]
    assert record["status"] == "completed", record.get("error")
    (plan,) = plans
    assert plan.main_style == 1  # mosaic weighs 0.7
    style_hw = plan.stages[-1].style_hws[1]
    assert max(style_hw) == round(0.5 * 32) == plan.stages[-1].style_size
    assert seen == {"evaluate_style": style_hw, "judge": (plan.result_hw, style_hw)}
    assert record["plan"] == plan.record()
