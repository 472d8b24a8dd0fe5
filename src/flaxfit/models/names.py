"""The registry's names, in the standard library only.

The command line lists them in `--help` without importing Flax (about 1.5 s
here); `flaxfit.models.registry` maps each name to its Linen and NNX class.
"""

#: The registry's models, in the order `--help` and error messages list them.
MODEL_NAMES = ("softmax", "cnn1", "cnn2", "mlp", "resnet8", "resnet20")
#: The two Flax APIs a registry model comes in.
APIS = ("linen", "nnx")
