"""`python -m app` is the `rankloop` command (used to start the worker beside the demo)."""

from app.cli import main

main()
