"""tomstream's services: thin layers over the shared core in ``tomstream``.

Each service is one folder with one job; data flows one way: alert topics → ``ingest``;
classification topics → ``broker_poll``; observation status → ``cadence`` → cadence triggers;
the stores → ``spectra_api``.
"""
