"""broker_poll: brokers' classification topics (and a REST push path) → classifiers, messages
and classifications in PostgreSQL. Built in the alert-cycle issue, on ``tomstream.consumer``."""
