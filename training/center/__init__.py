"""The center server on rank 0, its client and wire protocol: the asynchronous forms and backup
workers."""
