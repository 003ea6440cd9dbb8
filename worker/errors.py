"""Errors of the import pipeline: give up (ImportRefused) versus try later (SourceUnavailable)."""

from contracts.errors import Code


class WorkerError(Exception):
    """Root of every error the worker package raises on purpose."""


class ImportRefused(WorkerError):
    """Permanent: the image goes to ERROR with this code and message; retrying cannot help."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ImportRefused({self.code.name}, {self.message!r})"


class BlobStoreUnavailable(WorkerError):
    """Transient, and not the command's fault: the blob store refuses writes (disk full, quota,
    read-only) or cannot be reached. The command waits for it (worker/outages.py)."""


class SourceUnavailable(WorkerError):
    """Transient: the source kept failing after the retries; the whole command may be retried."""
