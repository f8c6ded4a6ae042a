"""broker_poll: brokers' classification topics (and a REST push path) → classifiers, messages
and classifications in PostgreSQL. Built in the alert-cycle issue, on ``tomstream.consumer``."""

# Classification messages are small (~200 bytes): 5,000 are 1 MB. Batches this size halve
# what each PostgreSQL and MongoDB round trip, commit and hand-over between the consumer and
# store threads costs per message (~17,000 → ~20,000 msg/s in bench/alert_cycle.py). A batch
# never waits to fill: it takes what arrived within the consumer's batch time.
BATCH_SIZE = 5000
