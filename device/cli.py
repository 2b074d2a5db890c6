"""``twm-device``: the care-home box's command line.

``twm-device --help`` lists the commands; ``twm-device version`` prints the installed version.
"""

from __future__ import annotations

from importlib.metadata import version as distribution_version

import typer

app = typer.Typer(
    name="twm-device",
    help="The care-home box. Commands arrive with the device issue.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """The care-home box. Commands arrive with the device issue."""


@app.command()
def version() -> None:
    """Print the installed version of the appliance software."""
    typer.echo(distribution_version("twm-appliance"))
