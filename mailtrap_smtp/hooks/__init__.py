"""Webhook delivery from the event log: target safety, the HTTP client, the outbox consumer."""
