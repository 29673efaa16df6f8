"""The README's result blocks say what the result files say (no figure typed by hand)."""

import os

from experiments import readme


def test_readme_result_blocks_match_the_result_files():
    with open(os.path.join(readme.ROOT, "README.md")) as f:
        text = f.read()
    names = {match.group(2) for match in readme.BLOCK.finditer(text)}
    assert names == set(readme.WRITERS)  # every writer has its block, and no block is orphan
    assert readme.render(text) == text, "run `python -m experiments.readme`"
