"""``twm-provision``: the technician's command line.

``twm-provision --help`` lists the commands; ``twm-provision version`` prints the installed version.
"""

from __future__ import annotations

from importlib.metadata import version as distribution_version

import typer

app = typer.Typer(
    name="twm-provision",
    help="Provision, check and update care-home boxes over SSH. "
    "Commands arrive with the provisioning issue.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Provision, check and update care-home boxes over SSH.

    Commands arrive with the provisioning issue.
    """


@app.command()
def version() -> None:
    """Print the installed version of the appliance software."""
    typer.echo(distribution_version("twm-appliance"))
