"""valuecodec: the value files shared by -i/-o, jobs and sweeps (the same code runs in sessions)."""

from __future__ import annotations

import json

import numpy
import pandas
import pytest

from backend_jupyter import valuecodec


def test_values_round_trip_in_their_safe_formats(tmp_path):
    values = {"a": {"x": [1, 2.5, None]}, "b": b"\x00\xff", "c": numpy.arange(6).reshape(2, 3),
              "d": pandas.DataFrame({"k": [1, 2], "v": ["p", "q"]})}
    report = valuecodec.save(values, [*values, "missing"], str(tmp_path))
    assert {k: v[0] for k, v in report.items() if isinstance(v, list)} == {"a": "json", "b": "bytes", "c": "npy",
                                                                           "d": "pandas"}
    assert report["missing"] == {"error": "not defined in the remote session"}
    ns = {}
    valuecodec.load(ns, {k: report[k][0] for k in values}, str(tmp_path))
    assert ns["a"] == values["a"] and ns["b"] == values["b"]
    assert (ns["c"] == values["c"]).all() and ns["d"].equals(values["d"])
    assert list(tmp_path.iterdir()) == []  # loading takes the files


def test_unsafe_values_need_pickle_explicitly(tmp_path):
    report = valuecodec.save({"o": object()}, ["o"], str(tmp_path))
    assert report["o"]["error"].startswith("a object cannot be moved safely")
    assert valuecodec.save({"s": {1, 2}}, ["s"], str(tmp_path), allow_pickle=True)["s"][0] == "pickle"


def test_a_job_keeps_its_small_json_variables_only(tmp_path):
    ns = {"acc": 0.93, "name": "run", "_private": 1, "In": [], "numpy": numpy, "f": len, "big": list(range(20_000)),
          "arr": numpy.zeros(3), "lr": 0.1}
    report = valuecodec.keep_small(ns, str(tmp_path), skip={"lr"})
    assert report == {"acc": ["json", 4], "name": ["json", 5]}
    # the total is bounded too: the first that fit are kept
    many = {f"v{i}": "x" * 1000 for i in range(10)}
    assert list(valuecodec.keep_small(many, str(tmp_path), limit=2000, total=3500)) == ["v0", "v1", "v2"]


def test_land_sets_variables_and_a_sweep_table(tmp_path):
    for job, acc in (("s-1", 0.5), ("s-2", 0.75)):
        valuecodec.store(str(tmp_path / job / "vars"), "acc", acc)
    ns = {}
    valuecodec.land(ns, {"vars": {"acc": "s-1/vars/acc.json"}}, str(tmp_path))
    assert ns == {"acc": 0.5}
    rows = [{"columns": {"job": f"s-{i}", "lr": lr, "status": "finished", "acc": None},
             "values": {"acc": f"s-{i}/vars/acc.json"}} for i, lr in ((1, 0.1), (2, 0.2))]
    rows.append({"columns": {"job": "s-3", "lr": 0.3, "status": "failed", "acc": None}, "values": {}})
    valuecodec.land(ns, {"table": "results", "rows": rows}, str(tmp_path))
    assert ns["results"].to_dict("records")[:2] == [{"job": "s-1", "lr": 0.1, "status": "finished", "acc": 0.5},
                                                    {"job": "s-2", "lr": 0.2, "status": "finished", "acc": 0.75}]
    assert pandas.isna(ns["results"]["acc"][2])


def test_without_pandas_a_table_is_a_list_of_dicts(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'", name="pandas")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    rows = [{"job": "a", "x": 1}]
    assert valuecodec.table(rows) == rows


def test_the_shipped_source_is_self_contained(tmp_path):
    """It runs in sessions without this package: executing it alone defines everything used."""
    scope = {}
    exec(valuecodec.source(), scope)
    report = scope["save"]({"v": [1]}, ["v"], str(tmp_path))
    assert report == {"v": ["json", 3]} and json.loads((tmp_path / "v.json").read_text()) == [1]


@pytest.mark.parametrize("fmt", ["xml"])
def test_unknown_formats_are_refused(fmt):
    with pytest.raises(ValueError, match="unknown format"):
        valuecodec.decode(fmt, b"")
