"""gradaudit's version, in the model so that reports can name it without importing anything else."""

__version__ = "0.1.0"
