"""Atomic writes and the run directory."""

import json
import os

import numpy as np
import pytest

from locdiff.errors import RunError
from locdiff.io import files
from locdiff.io.rundir import RunDir


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "meta.json")
    files.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError, match="crash"):
        with files.atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write('{"a": ')
            raise RuntimeError("crash")
    assert json.loads((tmp_path / "meta.json").read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["meta.json"]
    files.save_npz(str(tmp_path / "x.npz"), x=np.arange(3))
    np.testing.assert_array_equal(files.load_npz(str(tmp_path / "x.npz"))["x"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["meta.json", "x.npz"]


def test_run_directory_states(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    with pytest.raises(RunError, match="no such run directory"):
        run.read_method()
    os.makedirs(run.path)
    with pytest.raises(RunError, match="not a finished run"):
        run.read_method()
    run.write_method({"method": "cells", "rows": 3})
    meta = run.read_method()
    assert meta["method"] == "cells" and "jax" in meta["versions"] and run.finished
    with pytest.raises(RunError, match="no parameters"):
        run.require(run.params, "parameters")
