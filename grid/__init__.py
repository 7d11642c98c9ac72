"""Grid trading: its rules and store (grid_trading.py is the face).
May import config, core/ and persistence/; never main or web_server."""
