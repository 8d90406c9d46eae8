"""Delivery channels: email, Slack, a generic JSON webhook and the log."""
