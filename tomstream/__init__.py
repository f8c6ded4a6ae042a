"""tomstream: a streaming Target and Observation Manager for LSST DESC.

The shared core lives here (config, Avro codec, the batch consumer, stores, metrics, the local
stack); the services that use it live in the top-level ``services`` package.
"""

__version__ = "0.1.0"
