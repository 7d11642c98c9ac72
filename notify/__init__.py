"""Notifications: the outbox store, channels, rules, the watch of events and the delivery thread.
May import config, core/, persistence/ and daemon.daemon_workers; never main or web_server."""
