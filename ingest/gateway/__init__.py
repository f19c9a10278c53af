"""The Sentry-compatible HTTP ingest gateway: HTTP check-ins in, ``ingest-monitors`` messages out.

``server.serve`` runs it (``cronpipe gateway``); ``app.create_app`` builds the ASGI app.
The request path is pure parsing (``envelope``, ``checkins``, ``multipart``) followed by
three edges: project keys from PostgreSQL (``auth``, ``store``), a per-key rate limit
(``ratelimit``) and Kafka (``publisher``). See docs/gateway.md.
"""
