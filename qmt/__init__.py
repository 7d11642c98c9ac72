"""The live broker link around easy_qmt_trader: session, link, account, carry-over, QMT order journal,
the broker guard and the xtquant import.
May import the faces config/easy_qmt_trader/market_rules, core/ and persistence/; never main or web_server."""
