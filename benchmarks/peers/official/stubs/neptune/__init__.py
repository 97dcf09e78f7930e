"""Stand-in for ``neptune``: GRAIN imports it at the top of ``attack.py`` even when ``--neptune`` is not given."""
