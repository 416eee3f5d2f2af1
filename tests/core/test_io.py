import json

import numpy as np
import pytest

from astrobench.core.io import (
    DataFormatError,
    atomic_path,
    config_key,
    read_json,
    write_json_atomic,
)


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_handles_numpy_values(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"v": np.float32(0.5), "a": np.arange(3)})
    assert read_json(tmp_path / "x.json") == {"v": 0.5, "a": [0, 1, 2]}


def test_read_json_names_file_and_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match="bad.json: not valid JSON"):
        read_json(bad)
    with pytest.raises(DataFormatError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")


def test_config_key_is_stable_and_order_free():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_cache_folders_follow_the_umask(tmp_path, monkeypatch, umask):
    import os
    import stat

    from astrobench.core.task import cached

    monkeypatch.setenv("ASTROBENCH_CACHE", str(tmp_path / "cache"))
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "metrics.json", {"a": 1})

        def build(folder):
            (folder / "data.txt").write_text("x")
            return folder / "data.txt"

        target = cached("umask_test", "1", {"umask": umask}, build, "data.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o777 & ~umask


def test_write_predictions_keeps_integers_and_strings_and_formats_numbers(tmp_path):
    from astrobench.core.io import write_predictions

    out = write_predictions({"id": np.array([7, 123456]), "field": ["UDS", "COSMOS"], "z": np.array([0.123456, 2.0]),
                             "p": [0.5, 1 / 3]}, tmp_path / "p.csv", {"p": ".2f"})
    assert out.read_text().splitlines() == ["id,field,z,p", "7,UDS,0.12346,0.50", "123456,COSMOS,2,0.33"]
    with pytest.raises(ValueError, match="different lengths"):
        write_predictions({"a": [1, 2], "b": [1]}, tmp_path / "q.csv")
    assert not (tmp_path / "q.csv").exists()
