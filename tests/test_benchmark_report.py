"""The benchmark reports' sections: written, and replaced in place."""

from benchmarks import _report


def test_section_round_trip(tmp_path):
    path = str(tmp_path / "bench.md")
    assert _report._read(path) == ""
    table = "| run | samples/s |\n|---|---|\n| setting B | 4719 |\n| Blue Marble | 5919 |\n"
    _report.write_section(path, "e2e", "## Before\n\nText.\n\n" + table)
    _report.write_section(path, "other", "no table here")
    text = _report._read(path)
    assert "| setting B | 4719 |" in text and "| Blue Marble | 5919 |" in text
    assert text.index("e2e:end") < text.index("other:start")  # a new section goes last
    _report.write_section(path, "e2e", "| run | samples/s |\n|---|---|\n| setting B | 9467 |\n")
    text = _report._read(path)
    assert "| setting B | 9467 |" in text and "4719" not in text and "5919" not in text
    assert "no table here" in text  # the other section is kept
    assert text.count("e2e:start") == 1
