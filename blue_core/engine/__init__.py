"""The deconvolution engine: the network and the model around it, pseudo-bulk simulation, gene selection,
training, ensembles, inference (in memory and streamed), calibration and cohort adaptation.

Import the submodules (``blue_core.engine.inference``) or the top-level names (``bc.deconvolve``); this package
itself imports nothing, so ``import blue_core`` stays fast (torch loads only when a model is needed).
"""

__all__: list[str] = []
