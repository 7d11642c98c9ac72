"""The web API: the shared helpers (ok, error_response, the app state), the app and its server, the blueprints,
request validation, views, OpenAPI, streams, limits and the fast path.
May import the faces and every other package; never main or web_server."""
