"""corral: a container engine for one Linux host, built as a supervisor."""

__version__ = "0.1.0"
