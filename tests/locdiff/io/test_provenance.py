import subprocess

import pytest

from locdiff.io import provenance


def test_a_report_written_meanwhile_does_not_make_the_code_uncommitted(tmp_path, monkeypatch):
    """``+uncommitted`` marks changed code; results written by other runs are not code."""

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("locdiff/core.py", "experiments/results/run/run.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("first\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.chdir(tmp_path)
    head = provenance.git_revision()
    if head == "unknown":
        pytest.skip("git is not available")
    assert "+" not in head
    (tmp_path / "experiments/results/run/run.md").write_text("rewritten\n")
    assert provenance.git_revision() == head
    (tmp_path / "locdiff/core.py").write_text("changed\n")
    assert provenance.git_revision() == head + "+uncommitted"
