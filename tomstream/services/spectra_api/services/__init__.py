"""What the endpoints do, between the validated request and the SQL in ``storage``."""
