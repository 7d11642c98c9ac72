"""Order-file intake: parse, store, intake and the paced worker.
May import config, core/ and persistence/; never main or web_server."""
