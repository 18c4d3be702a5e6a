"""Experiments and training: run directories, the spiral toy, the trainer."""
