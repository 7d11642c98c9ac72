"""Market data: the sources (xtquant, mootdx, replay, synthetic), the quote hub, the market and feed clocks,
the bar store.
May import config, market_rules, core/ and persistence/; never main or web_server."""
