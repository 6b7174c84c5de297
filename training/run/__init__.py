"""The program each rank runs: the trainer, checkpoints, metrics and where they go."""
