"""The multi-account supervisor: accounts file, identities, children, lifelines and the one browser address.
May import config, persistence/, webapi/ and daemon/; never main or web_server."""
