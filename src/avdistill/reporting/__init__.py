"""Reporting: result tables (and, as they land, pictures and sound)."""
