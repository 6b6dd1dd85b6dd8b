"""The side-by-side benchmark of millis-proto's transports (``make bench``)."""
