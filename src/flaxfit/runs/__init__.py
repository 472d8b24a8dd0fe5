"""Runs stage: config, optimizer from config, run directories, lock, checkpoints, manifest,
verify-resume, signals and multi-host setup.

Builds on training/: a run is `fit()` plus everything that makes it resumable,
reproducible and safe to leave running.
"""
