"""broker_poll: brokers' classification topics (and a REST push path) → classifiers, messages
and classifications in PostgreSQL. Built in the alert-cycle issue, on ``tomstream.consumer``."""

# Classification messages are small (~200 bytes): 10,000 are 2 MB. Big batches spread what
# each PostgreSQL and MongoDB round trip, commit and hand-over between the consumer and store
# threads costs over more messages: `bench/alert_cycle.py --skip-ingest` on 2 cores gave
# ~16,800 msg/s with 1,000, 22,000-23,600 with 5,000 and ~25,900 with 10,000. A batch never
# waits to fill: it takes what arrived within the consumer's batch time.
BATCH_SIZE = 10_000
