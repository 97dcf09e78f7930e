"""Integrations with FL frameworks (each imports its framework lazily; see :mod:`gradleak.integrations.flower`)."""
