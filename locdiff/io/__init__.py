"""Files: the run directory (:mod:`.rundir`), atomic writes (:mod:`.files`), where a result
came from (:mod:`.provenance`), and exports to CSV, GeoJSON and PNG (:mod:`.export`).
"""
