"""Looking at predictions: probability-map plots (:mod:`.plots`, :mod:`.worldmap`), credible
regions as polygons (:mod:`.regions`), place names (:mod:`.places`), the Jupyter explorer
(:mod:`.explore`) and the local page (:mod:`.serve`).
"""
