"""The data builders of the two real-data settings, outside the core library: Blue Marble
patches of the whole Earth (:mod:`.bluemarble`) and setting B's oracle conditions
(:mod:`.oracle`).
"""
