"""Config: models, loading and validation, path resolution.

Importing this package is cheap; the pydantic models load on first use.
"""
