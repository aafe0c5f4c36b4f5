"""The matrix's one error type: a name, file or field is invalid."""

from __future__ import annotations


class MatrixError(ValueError):
    """A matrix name, file or field is invalid; the message names the source and field."""
