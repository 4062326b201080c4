"""Outbox consumers of this package (suppression on hard bounce, quota notifications, stats rollups):
each reads the events table after commit through its own durable cursor (`outbox.py`)."""
