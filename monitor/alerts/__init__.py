"""Alerts: rules over the store, the outbox, and the channels that deliver them."""
