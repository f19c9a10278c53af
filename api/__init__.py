"""Read API (FastAPI): Sentry-compatible, read-only monitor endpoints. Entry points: api.app.create_app, api.server.serve."""
