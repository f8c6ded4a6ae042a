"""The project's Avro schema files, shipped as package data.

Every ``.avsc`` file under :data:`SCHEMA_DIR` is named after the full name of the type it defines
(``<namespace>.<name>.avsc``), so a loader can resolve a named type from the sibling files of the
schema that references it. See ``avro/README.md`` for the list and provenance, and
:mod:`tomstream.avro` for the codec that loads them.
"""

from pathlib import Path

SCHEMA_DIR: Path = Path(__file__).parent / "avro"
"""Root folder of the ``.avsc`` files (ELAsTiCC at the top level, Rubin under ``lsst/vNN_0/``)."""
