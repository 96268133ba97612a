"""Pure logic: no SQLAlchemy, no I/O."""
