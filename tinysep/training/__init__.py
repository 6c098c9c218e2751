"""Pieces of `tinysep.train`: the data pipeline, spectral losses, validation, run state."""
