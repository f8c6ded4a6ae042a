"""ingest: alert topics (Avro) → raw alerts in MongoDB; objects, sources and forced photometry
in PostgreSQL. Built in the alert-cycle issue; the consumer core it plugs into is
``tomstream.consumer``."""

# An alert with its history is ~1 KB or more: 2,000 make a batch of a few MB. Against 500,
# PostgreSQL's CPU per alert fell from 96 to 71 µs and ingest rose from ~3,650 to ~4,050
# alerts/s in bench/alert_cycle.py; a batch never waits to fill (the consumer's batch time).
BATCH_SIZE = 2000
