"""flaxfit: the training loop of "JAX / Flax 入門", made real.

Every piece is a plain function you can read and replace: data -> models ->
train step -> fit -> checkpoints/metrics -> CLI, plots, server.
"""

__version__ = "0.1.0"
