"""Thin I/O adapters over the millis_proto core."""
