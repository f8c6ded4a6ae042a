"""tomstream: a streaming Target and Observation Manager for LSST DESC.

One namespace, three layers (kept apart by the import-linter contracts in pyproject.toml):

* the library — config, Avro codec, contracts, the consumer core, Kafka, stores, metrics,
  outbox, classification storage — in the modules and packages at this level;
* the services (``tomstream.services``): thin programs over the library that never import one
  another;
* the application shell (``tomstream.shell``): the ``tomstream`` command, the demo, the local
  stack, stats, status and reports, which may import everything.
"""

__version__ = "0.1.0"
