"""The ``t2ctl`` command line: one Typer sub-app per command group."""
