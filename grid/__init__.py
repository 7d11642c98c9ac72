"""Grid trading: its rules and store (grid_trading.py is the face).
May import config, core/, market/ (the ex-rights arithmetic, issue 28) and persistence/; never main or web_server."""
