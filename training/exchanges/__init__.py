"""The optimizer that wraps an inner Keras optimizer, and the exchanges it delegates to, over
Horovod's collectives."""
