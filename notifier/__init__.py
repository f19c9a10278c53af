"""The notifier: consumes ``monitors-incidents`` and delivers to alert channels.

Imports only ``schemas``. ``store.py`` is the SQL, ``formats.py`` the request bodies,
``policy.py`` the pure retry rules, ``consumer.py`` Kafka → delivery state,
``delivery.py`` the per-channel HTTP senders, ``service.py`` wires them.
"""
