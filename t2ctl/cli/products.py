"""``t2ctl products``: list, import and sync the catalogue."""

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from t2ctl import db, products, wiring
from t2ctl.cli import output
from t2ctl.cli.context import ConfigOption, JsonOption, session
from t2ctl.errors import T2Error
from t2ctl.provisioning.zoho import catalogue
from t2ctl.security import audit

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
    with db.transaction():
        result = products.import_file(file)
        audit.record(
            "products.import",
            "catalogue",
            file=str(file),
            added=result.added,
            updated=result.updated,
        )
    if json:
        output.emit_json({"added": result.added, "updated": result.updated})
        return
    output.note(f"imported {file}: {result.added} added, {result.updated} updated")


@app.command("sync")
def sync(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Make the catalogue match Zoho Inventory's items (sku, name, rate, status, Term Months);
    products no longer in Zoho are deactivated."""
    current = session(ctx, config)
    current.connect()
    settings = current.settings
    if settings.sandbox_mode:
        raise T2Error(
            "products sync reads Zoho Inventory, and zoho.enabled is false (sandbox mode): "
            "enable Zoho, or load the catalogue with `t2ctl products import FILE`"
        )
    client = wiring.zoho_client(settings, current.box())
    with Progress(
        TextColumn("reading Zoho items"),
        BarColumn(),
        TextColumn("{task.completed} items"),
        TimeElapsedColumn(),
        console=output.stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task("items", total=None)
        items = catalogue.read(
            client,
            currency=settings.zoho.currency,
            on_page=lambda count: progress.advance(task, count),
        )
    result = products.sync(items)
    # Recorded after the sync: no transaction spans the Zoho calls that read the items.
    audit.record(
        "products.sync",
        client.organization_id,
        added=result.added,
        updated=result.updated,
        deactivated=result.deactivated,
    )
    if json:
        output.emit_json(
            {
                "added": result.added,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "deactivated": result.deactivated,
                "skipped": [{"item": s.field, "reason": s.message} for s in result.skipped],
            }
        )
        return
    output.table(
        ["change", "product ids"],
        [
            (change, ", ".join(ids))
            for change, ids in (
                ("added", result.added),
                ("updated", result.updated),
                ("deactivated", result.deactivated),
            )
            if ids
        ],
        title="products sync",
        empty="no product changed",
    )
    for skipped in result.skipped:
        output.note(f"skipped {skipped.field}: {skipped.message}")
    output.note(
        f"synced from Zoho: {len(result.added)} added, {len(result.updated)} updated, "
        f"{result.unchanged} unchanged, {len(result.deactivated)} deactivated, "
        f"{len(result.skipped)} item(s) skipped"
    )
