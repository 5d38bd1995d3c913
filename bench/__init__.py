"""The benchmark program: ``python -m bench`` (see bench/__main__.py and docs/PERFORMANCE.md)."""
