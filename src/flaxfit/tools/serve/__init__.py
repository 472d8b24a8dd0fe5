"""The digit pad: a local web page to draw a digit and watch a trained model read it.

    flaxfit serve --run runs/NAME [--host 127.0.0.1] [--port 8000]

A run on other pictures (colour, another size) gets an upload page instead:
choose or drop a picture and see the classes the model gives it.

`create_app(run)` builds the ASGI app (Starlette) for a loaded run; `serve`
runs it with uvicorn. Only the CLI imports this package: the server sits at
the end of the data flow and reads runs, pictures and models like any client.
"""

from flaxfit.tools.serve.app import MAX_BODY_BYTES as MAX_BODY_BYTES
from flaxfit.tools.serve.app import create_app as create_app
from flaxfit.tools.serve.predictor import Prediction as Prediction
from flaxfit.tools.serve.predictor import Predictor as Predictor
from flaxfit.tools.serve.server import serve as serve

__all__ = ["MAX_BODY_BYTES", "Prediction", "Predictor", "create_app", "serve"]
