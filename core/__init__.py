"""The trading core: order journal and checks, risk breakers, trading state, signals, the rule runner,
per-stock params, the stock pool, domain types and events.
May import the top-level faces config/logger/market_rules/indicator_calculator, persistence/ and market/; never main or web_server."""
