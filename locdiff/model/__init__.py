"""The model core: the CS-UNet (:mod:`.csunet`), diffusion in SHDD space as pure
functions (:mod:`.diffusion`), and sampling K SHDD vectors per condition (:mod:`.sampling`).
"""
