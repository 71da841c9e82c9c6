"""Data transforms."""
