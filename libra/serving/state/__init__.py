"""Shared state: the worker registry and the request-rate store, in memory or in Redis."""
