"""``t2ctl secrets``: master-key material."""

import typer

from t2ctl.security import crypto

app = typer.Typer(no_args_is_help=True)


@app.command("generate-master-key")
def generate_master_key() -> None:
    """Print a new master key (a Fernet key) for security.master_key; nothing is stored."""
    typer.echo(crypto.generate_key())
