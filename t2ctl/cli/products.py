"""``t2ctl products``: list and import the catalogue."""

from pathlib import Path

import typer

from t2ctl import products
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """List every product, active or not."""
    session(ctx, config).connect()
    rows = [products.public(p) for p in products.listing()]
    if json:
        output.emit_json(rows)
        return
    output.table(
        ["product id", "name", "price", "term", "active"],
        [
            (
                r["productId"],
                r["name"],
                f"{r['price']['value']} {r['price']['currency']}",
                f"{r['termMonths']} months",
                "yes" if r["active"] else "no",
            )
            for r in rows
        ],
        empty="the catalogue is empty: load it with `t2ctl products import FILE`",
    )


@app.command("import")
def import_(
    ctx: typer.Context, file: Path, config: ConfigOption = None, json: JsonOption = False
) -> None:
    """Load products from a .csv or .json file; all rows or none."""
    session(ctx, config).connect()
    result = products.import_file(file)
    if json:
        output.emit_json({"added": result.added, "updated": result.updated})
        return
    output.note(f"imported {file}: {result.added} added, {result.updated} updated")
