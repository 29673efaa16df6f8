"""Training: the loop that runs, checkpoints and resumes a run (:mod:`.trainer`), the jitted
step (:mod:`.step`), what a run keeps: its Orbax checkpoints and ``training.json``
(:mod:`.checkpoints`), the validation split and early stopping (:mod:`.early_stopping`),
and the device mesh (:mod:`.sharding`).
"""
