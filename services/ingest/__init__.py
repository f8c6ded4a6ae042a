"""ingest: alert topics (Avro) → raw alerts in MongoDB; objects, sources and forced photometry
in PostgreSQL. Built in the alert-cycle issue; the consumer core it plugs into is
``tomstream.consumer``."""

# An alert with its history is ~1 KB or more: 500 keep a batch near 1 MB.
BATCH_SIZE = 500
