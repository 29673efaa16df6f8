"""The benchmark reports' sections: written, replaced, and their tables read back."""

from benchmarks import _report


def test_section_round_trip(tmp_path):
    path = str(tmp_path / "bench.md")
    assert _report.read_table(path, "e2e") == []
    table = "| run | samples/s |\n|---|---|\n| setting B | 4719 |\n| Blue Marble | 5919 |\n"
    _report.write_section(path, "e2e", "## Before\n\nText.\n\n" + table)
    _report.write_section(path, "other", "no table here")
    assert _report.read_table(path, "e2e") == [
        {"run": "setting B", "samples/s": "4719"},
        {"run": "Blue Marble", "samples/s": "5919"},
    ]
    assert _report.read_table(path, "other") == []
    _report.write_section(path, "e2e", "| run | samples/s |\n|---|---|\n| setting B | 9467 |\n")
    assert _report.read_table(path, "e2e") == [{"run": "setting B", "samples/s": "9467"}]
    assert _report._read(path).count("e2e:start") == 1
