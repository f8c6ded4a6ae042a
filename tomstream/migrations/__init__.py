"""SQL migration files, applied in order by ``tomstream db migrate``."""
