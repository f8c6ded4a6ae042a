"""spectra_api: the DESC TOM's ``elasticc2/*`` HTTP API (FastAPI), served from what ingest and
broker_poll store (``tomstream api``; docs/spectra-api.md).

``main.create_app`` builds the app; ``handlers`` are the thin routes, ``services`` the logic,
``storage`` the SQL; ``auth`` checks callers, ``models`` every request and response.
"""
