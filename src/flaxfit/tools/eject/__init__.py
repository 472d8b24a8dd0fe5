"""`flaxfit eject`: a run as one plain Python file of JAX, Flax, Optax and NumPy.

    ejected = eject_run("runs/cnn1")             # or eject_config(TrainConfig(...))
    write_ejected("train_cnn1.py", ejected.source)

See `flaxfit.tools.eject.generate` for how the file is made from fit()'s code.
"""

from flaxfit.tools.eject.generate import Ejected as Ejected
from flaxfit.tools.eject.generate import eject_config as eject_config
from flaxfit.tools.eject.generate import eject_run as eject_run
from flaxfit.tools.eject.generate import eject_source as eject_source
from flaxfit.tools.eject.generate import write_ejected as write_ejected
from flaxfit.tools.eject.source import EjectError as EjectError

__all__ = ["EjectError", "Ejected", "eject_config", "eject_run", "eject_source", "write_ejected"]
