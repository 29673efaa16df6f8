"""Training: the loop that runs, checkpoints and resumes a run (:mod:`.trainer`), the jitted
step (:mod:`.step`), the validation split and early stopping (:mod:`.early_stopping`), and
the device mesh (:mod:`.sharding`).
"""
