"""Ablation grids: declaration and ids, resumable runs on Dask and local processes, the table."""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import logging
import math
from pathlib import Path

import pytest
import yaml

from nstlib import ablation, transfer

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


def test_config_holds_every_stylize_argument_and_the_id_hashes_it():
    spec = ablation.load_grid(GRID4).expand()[0]
    params = inspect.signature(transfer.stylize).parameters
    assert set(spec.config) == (set(params) - {"callbacks", "progress"}) | {"evaluate"}
    assert spec.config["tv_weight"] == params["tv_weight"].default  # defaults filled in
    assert spec.config["optimizer"] == "adam" and spec.config["size"] == 32
    assert spec.run_id == _sha(spec.config)


def test_ids_are_stable_and_depend_only_on_the_settings():
    a = ablation.load_grid(GRID4).expand()
    reordered = {"evaluate": EVALUATE, "axes": {"optimizer": ["adam", "rmsprop"],
                                                "learning_rate": [0.01, 0.03]},
                 "fixed": dict(reversed(list(FAST.items())))}
    b = ablation.load_grid(reordered).expand()
    assert [s.run_id for s in a] == [s.run_id for s in b]
    # writing a default explicitly is the same run; changing a value is another one
    explicit = ablation.load_grid({**GRID4, "fixed": {**FAST, "tv_weight": 1.0}}).expand()
    assert [s.run_id for s in explicit] == [s.run_id for s in a]
    other = ablation.load_grid({**GRID4, "fixed": {**FAST, "seed": 1}}).expand()
    assert not {s.run_id for s in other} & {s.run_id for s in a}


def test_yaml_exponent_strings_become_numbers(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("fixed: {content: chelsea, style: mosaic, learning_rate: 1e-2}\n")
    config = ablation.load_grid(path).expand()[0].config
    assert config["learning_rate"] == 0.01 and isinstance(config["learning_rate"], float)


@pytest.mark.parametrize("data, fragment", [
    ({"fixed": FAST, "axes": {"optimiser": ["adam"]}}, "did you mean 'optimizer'"),
    ({"fixed": {**FAST, "colour": 1}}, "unknown setting 'colour' in fixed"),
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
    grid = {"fixed": FAST, "evaluate": EVALUATE,
            "axes": {"content_weight": [1.0, float("nan")]},  # NaN weight: non-finite loss
            "runs": [{"style_layers": ["block1_conv1", "block9_conv9"]}]}
    result = ablation.run_grid(grid, tmp_path, backend=local_backend, progress=False)
    assert [r["status"] for r in result.rows] == ["completed", "failed", "failed"]
    ok, nan, bad_layer = (result.record(r["run_id"]) for r in result.rows)
    assert ok["final"]["total"] > 0 and ablation.image_path(tmp_path, ok["run_id"]).is_file()
    assert nan["error"].startswith("NonFiniteLossError: loss became non-finite at step 0")
    assert math.isnan(nan["config"]["content_weight"])
    assert "block9_conv9" in bad_layer["error"] and bad_layer["error"].startswith("ValueError")
    for failed in (nan, bad_layer):
        assert not ablation.image_path(tmp_path, failed["run_id"]).exists()
    rows = _csv_rows(tmp_path)
    assert [r["status"] for r in rows] == ["completed", "failed", "failed"]
    assert "block9_conv9" in rows[2]["error"]
    assert sorted(result.failed) == sorted([nan["run_id"], bad_layer["run_id"]])


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
                "shrinkage": 3}
    examples = Path(__file__).resolve().parent.parent / "examples"
    for name, n_runs in expected.items():
        specs = ablation.load_grid(examples / f"{name}.yaml").expand()
        assert len(specs) == n_runs, name
        assert all(s.config["weights"] == "auto" for s in specs)
