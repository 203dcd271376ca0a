"""The generation engine: model loading, decoding settings, prompts, streaming, constraints.

Import the submodules directly (``kolyric.engine.settings`` is light; ``loading`` and
``stream`` import torch).
"""
