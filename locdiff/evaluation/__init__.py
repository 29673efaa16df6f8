"""Evaluation: the field's protocol over a run (:mod:`.protocol`) and its metrics
(:mod:`.metrics`).
"""
