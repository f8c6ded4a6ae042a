"""spectra_api: the DESC TOM ``elasticc2/*`` HTTP API (FastAPI) over what ingest and
broker_poll store. Built in the spectra_api issue."""
