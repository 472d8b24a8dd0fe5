"""Tools stage: plots, demos, summary, export, predict and the digit pad (serve/).

Leaves: they read runs and models; nothing outside tools/ and cli.py imports them.
"""
