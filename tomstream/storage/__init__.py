"""I/O with the stores: PostgreSQL (tables, migrations) and MongoDB (raw messages)."""
