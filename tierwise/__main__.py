"""`python -m tierwise ...` runs the `tierwise` command."""

from tierwise.cli import main

main()
