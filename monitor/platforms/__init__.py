"""The platforms: one package per platform (``x``, ``reddit``, ``mastodon``, ``bluesky``), each
behind the collector interface in :mod:`.base`, plus the HTTP plumbing they share (:mod:`.http`)
and the stream helpers (:mod:`.streams`).

A platform package's ``__init__`` is light (no client library): it defines ``PLATFORM``, the
:class:`monitor.config.Platform` the registry finds through the entry point group
``touchpoint.platforms``; its collector module is imported only when a brand uses it.
"""
