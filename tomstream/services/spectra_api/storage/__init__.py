"""The API's reads and writes in PostgreSQL and MongoDB (tables of migrations 0003 and 0005)."""
