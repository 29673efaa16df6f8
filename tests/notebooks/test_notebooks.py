"""The notebooks run top to bottom (nbclient), from the repository alone.

Without any environment variable a notebook trains its model at full size; the test
sets only the sizes (``LOCDIFF_NB_STEPS``, ``LOCDIFF_NB_POINTS``) so that it runs in
seconds: every cell and code path is the same. The kernel inherits the conftest's
compilation settings.
"""

import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks")


@pytest.mark.parametrize("name", ["probability_maps.ipynb", "unseen_locations.ipynb"])
def test_notebook_executes(name, monkeypatch):
    for variable in [v for v in os.environ if v.startswith("LOCDIFF_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("LOCDIFF_NB_STEPS", "30")
    monkeypatch.setenv("LOCDIFF_NB_POINTS", "3000")
    with open(os.path.join(ROOT, name)) as f:
        notebook = nbformat.read(f, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{name} is committed with outputs"
    )
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    )
    client.execute()
    errors = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    images = sum(
        "image/png" in out.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert images >= 2  # the maps / the study's figures were drawn
    if name == "probability_maps.ipynb":  # the explorer's widget is displayed
        assert any(
            "application/vnd.jupyter.widget-view+json" in out.get("data", {})
            for cell in notebook.cells
            if cell.cell_type == "code"
            for out in cell.get("outputs", [])
        )
