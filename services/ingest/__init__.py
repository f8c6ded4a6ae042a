"""ingest: alert topics (Avro) → raw alerts in MongoDB; objects, sources and forced photometry
in PostgreSQL. Built in the alert-cycle issue; the consumer core it plugs into is
``tomstream.consumer``."""
