"""Helpers shared by the integration tests and bench scripts (no pytest dependency)."""
