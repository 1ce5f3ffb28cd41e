"""Pretrained BLUE models, shipped as package data (one folder per model: model.json + model.safetensors).

Found by :mod:`blue_core.engine.store` through ``importlib.resources`` (installed as ``blue_pretrained``)."""
