"""examples/rings.ipynb runs top to bottom (at the smoke size)."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "examples" / "rings.ipynb"


def test_rings_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROBENCH_NOTEBOOK_SIZE", "smoke")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "classify accuracy" in outputs
    assert (tmp_path / "notebook_runs" / "rings").is_dir()
