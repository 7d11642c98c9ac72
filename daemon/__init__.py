"""The daemon's composition and worker threads (the watchdog, the periodic workers).
May import the faces and every package; never main or web_server."""
