"""The web server, as the owner meets it: the Flask app (security checks, JSON error shapes, the UI's static files)
built by `webapi.server.create_app` and served by waitress in a thread (`WebServer`), and the API token file. The
routes live in the `webapi` blueprints, the shared helpers (`ok`, `error_response`, the app state) in `webapi.common`."""
from __future__ import annotations

from webapi.common import (AppState, Binding, WebContext, host_header_allowed, is_loopback_address,
                           load_or_create_token)
from webapi.server import WebServer, create_app, secure_app

__all__ = ["AppState", "Binding", "WebContext", "WebServer", "create_app", "host_header_allowed",
           "is_loopback_address", "load_or_create_token", "secure_app"]
