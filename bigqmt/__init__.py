"""The big-QMT bridge (issue 29): `bridge_strategy.py`, the file the user pastes into big QMT's strategy editor
(Python 3.6, standard library only), and the daemon's broker back-end that talks to it with JSON lines over
loopback TCP or a folder of files (`channel`, `rows`, `timings`, `broker`, `probe`).
May import config, core/, market/, persistence/ and qmt/ (order journal, link health, account config); never main,
web_server or easy_qmt_trader. `bridge_strategy` imports nothing from the project (it runs inside QMT)."""
