"""Where Tailor keeps state: a port the domain writes through, with in-memory and AWS adapters."""

from tailor.store.port import BlobStore, Conflict, StateStore, TABLES

__all__ = ["BlobStore", "Conflict", "StateStore", "TABLES"]
