"""Hyperparameter sweeps: the sweep file, its search methods, early stopping, and the driver
that runs the trials as ordinary jobs of the service."""
