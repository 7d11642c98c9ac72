"""The broker back-ends behind one contract (issue 29): which back-end the settings select, and the written contract
every back-end passes (CONTRACT.md, proven by test/conformance). May import config, core/, persistence/ and the
back-end modules it selects (easy_qmt_trader, bigqmt/, gateway/); never main or web_server."""
