"""Audio sources and sinks for millis-proto sessions."""
