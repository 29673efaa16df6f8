"""Data: embedding datasets and the Grain pipeline (:mod:`.datasets`), shards read in place
(:mod:`.streaming`), synthetic shards (:mod:`.synthetic`), benchmark and photo-list readers
(:mod:`.readers`), and train/test splits (:mod:`.splits`).
"""
