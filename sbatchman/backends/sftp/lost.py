"""The two partial endings of an SFTP transfer, shared by push (session) and fetch."""

from __future__ import annotations

from sbatchman.model import PartialTransfer


class FilesFailed(PartialTransfer):
    """Some files could not be written (the rest were); the connection itself is fine."""


class LinkLost(PartialTransfer):
    """The connection failed part way; `outcome` holds the files that had landed by then."""
