"""sbatchman: push working directories to many HPC clusters at once."""

__version__ = "0.1.0"
