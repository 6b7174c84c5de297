"""The built-in datasets and models."""
