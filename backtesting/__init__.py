"""Backtesting: the run (run_backtest, build_settings), engine, market data, reports, charts, the optimiser
and compare.
May import the faces config/market_rules/strategy/indicator_calculator, core/ and market/; never backtest, main or web_server."""
