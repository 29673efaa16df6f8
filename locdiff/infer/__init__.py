"""Inference: the ``Geolocator`` (:mod:`.geolocator`), the ``Prediction`` every method answers
(:mod:`.prediction`), the map rules and their calibration (:mod:`.map_rules`,
:mod:`.calibration`), snapping (:mod:`.snapping`), the doubt (:mod:`.reference`),
LocDiff-H (:mod:`.hybrid`) and gallery search (:mod:`.neighbours`).
"""
