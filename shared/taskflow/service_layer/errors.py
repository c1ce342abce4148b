"""Errors the entry points map to an answer."""


class RetryableError(RuntimeError):
    """A transient failure: the caller should answer so that the sender redelivers."""
