"""asana-etl: keep a SQL database in sync with Asana's time tracking entries."""

__version__ = "0.1.0"
