"""Inversion: embedders (and, later, vec2text inverters)."""
