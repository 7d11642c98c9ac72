"""The protection guarantee: the sentinel outside the trading path and the heartbeat to an outside monitor.
May import config, core/, market/ and persistence/; never main or web_server."""
