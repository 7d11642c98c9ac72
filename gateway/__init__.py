"""The remote gateway (issue 30): `qmt_gateway` on the Windows box wraps one broker back-end (miniQMT, the big-QMT
bridge) and serves the broker contract, a journaled resumable event stream and the latest quotes over signed HTTP;
`gateway.client.RemoteBroker` is the daemon's side of it (BROKER = "remote").
May import config, core/, persistence/, brokers/, qmt/ (link health, OutcomeUnknown), market/ and the back-end
modules it wraps (easy_qmt_trader, bigqmt/, sim_trader); never main or web_server."""
