"""Alerts: rules over the store, the outbox that groups and retries them, the watchdog and the
heartbeat; the channels that deliver them are the notify layer's (:mod:`monitor.notify`)."""
