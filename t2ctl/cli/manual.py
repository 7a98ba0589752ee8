"""``t2ctl help``: every command's help page, from the one source ``--help`` reads.

Chosen over man pages: Typer renders help from the commands' own docstrings and options, so
a page here cannot drift from the code, needs no build step, and is there wherever the
package is installed (pipx and venvs put no pages on MANPATH).
"""

from collections.abc import Iterator
from typing import Annotated

import click
import typer

Words = Annotated[
    list[str] | None,
    typer.Argument(help="The command, as typed after t2ctl: `orders list`.", show_default=False),
]


def help_page(
    ctx: typer.Context,
    command: Words = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every command's page, one after another.")
    ] = False,
) -> None:
    """Show a command's help page (`t2ctl help orders list`), or every page with --all.

    The same pages as `t2ctl COMMAND --help`; pipe --all to `less` for a full reference.
    """
    root = ctx.find_root()
    if every:
        for words in _walk(root.command, []):
            _show(_context(root, words))
        return
    _show(_context(root, command or []))


def _context(root: click.Context, words: list[str]) -> click.Context:
    """The context ``t2ctl WORDS`` runs in, or a usage error naming the first wrong word."""
    context = root
    for depth, word in enumerate(words):
        child = _subcommand(context, word)
        if child is None:
            typed = " ".join(["t2ctl", *words[: depth + 1]])
            raise typer.BadParameter(f"`{typed}` is not a command; see `t2ctl --help`")
        context = click.Context(child, info_name=word, parent=context)
    return context


def _walk(command: click.Command, words: list[str]) -> Iterator[list[str]]:
    """The words of each command and group, depth first, in the order ``--help`` lists them."""
    yield words
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            child = _subcommand(context, name)
            if child is not None and not child.hidden:
                yield from _walk(child, [*words, name])


def _subcommand(context: click.Context, name: str) -> click.Command | None:
    """The command ``name`` in ``context``'s group, found as running it finds it, through
    ``resolve_command``: the root imports a command's module only then."""
    group = context.command
    if not isinstance(group, click.Group) or group.get_command(context, name) is None:
        return None
    return group.resolve_command(context, [name])[1]


def _show(context: click.Context) -> None:
    """Print the page as ``--help`` does (Typer's commands print it themselves)."""
    page = context.command.get_help(context)
    if page:
        typer.echo(page)
