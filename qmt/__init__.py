"""The live broker link around easy_qmt_trader: session, link, account, carry-over, QMT order journal,
the broker guard, the xtquant import, push handling (events) and reconnect/reconcile.
May import the faces config/easy_qmt_trader/market_rules, core/, persistence/ and market.clock; never main or
web_server."""
