"""Lets `python -m sbatchman` behave exactly like the installed command."""

from sbatchman.cli import main

main()
