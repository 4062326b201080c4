"""SMTP submission front end: listeners, TLS, sessions (the only protocol adapter for SMTP)."""
