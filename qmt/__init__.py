"""The live broker link around easy_qmt_trader: session, link, account, carry-over, QMT order journal,
the broker guard, the xtquant import, push handling (events), reconnect/reconcile and the new share/bond
queries of the chores (offerings).
May import the faces config/easy_qmt_trader/market_rules, core/, persistence/ and market.clock; never main or
web_server."""
