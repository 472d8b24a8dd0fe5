"""`python -m flaxfit ...` is the `flaxfit` command."""

import sys

from flaxfit.cli import main

sys.exit(main())
