"""Watch tasks: their rules, store, requests and the monitor.
May import config, core/, market/ and persistence/; never main or web_server."""
