"""The notebooks run top to bottom (nbclient), from the repository alone.

Without any environment variable a notebook trains its model at full size; the test
sets only the sizes (``LOCDIFF_NB_STEPS``, ``LOCDIFF_NB_POINTS``, ``LOCDIFF_NB_LAND``) so
that it runs in seconds: every cell and code path is the same. The kernel inherits the conftest's
compilation settings.
"""

import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks")


DEMO_RUN = os.path.join(
    ROOT, "..", "experiments", "cache", "bluemarble_runs_demo_0_far0.05",
    "random_efficientnet-lite0", "locdiff",
)  # fmt: skip


@pytest.mark.parametrize(
    "name, demo",
    [("probability_maps.ipynb", False), ("probability_maps.ipynb", True),
     ("unseen_locations.ipynb", False)],
)  # fmt: skip
def test_notebook_executes(name, demo, monkeypatch):
    """``demo``: the probability-maps notebook on the demo's run (where ``make demo`` has
    trained it in this checkout), else on the small model it trains itself."""
    for variable in [v for v in os.environ if v.startswith("LOCDIFF_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("LOCDIFF_NB_STEPS", "30")
    monkeypatch.setenv("LOCDIFF_NB_POINTS", "3000")
    monkeypatch.setenv("LOCDIFF_NB_LAND", "300")  # land points drawn for far validation
    if demo and not os.path.isdir(DEMO_RUN):
        pytest.skip("needs the demo's run: make demo trains it")
    if not demo:
        monkeypatch.setenv("LOCDIFF_DEMO_RUN", os.path.join(ROOT, "no-demo-run"))
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
    printed = "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    if name == "probability_maps.ipynb":  # the run it used
        assert ("bluemarble_runs_demo_0_far0.05" in printed) == demo, printed[:500]
    if name == "probability_maps.ipynb":  # the explorer's widget is displayed
        assert any(
            "application/vnd.jupyter.widget-view+json" in out.get("data", {})
            for cell in notebook.cells
            if cell.cell_type == "code"
            for out in cell.get("outputs", [])
        )
