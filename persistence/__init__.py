"""SQLite plumbing (storage), database health checks, the config store and the instance lock.
May import config and logger only; never main or web_server."""
