"""Alembic migrations of the allocator's schema (run by `lablink db upgrade`)."""
