"""`platformdb up | down | status | env`: the embedded stack."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table

from platformdb import embedded
from platformdb.cli.base import (
    JsonOption,
    app,
    print_json,
    settings,
    show,
)
from platformdb.redaction import redact

# ------------------------------------------------------------ embedded stack


@app.command()
def up(as_json: JsonOption = False) -> None:
    """Start the embedded stack (PostgreSQL, Redis; chDB needs no server)."""
    show_states(embedded.up(settings().home), as_json)


@app.command()
def down(as_json: JsonOption = False) -> None:
    """Stop what `up` started, and nothing else."""
    stopped = embedded.down(settings().home)
    if as_json:
        print_json({"stopped": stopped})
        return
    show(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show the embedded stack's services."""
    show_states(embedded.status(settings().home), as_json)


@app.command()
def env() -> None:
    """Print `export` lines; `eval "$(platformdb env)"` points psql at the stack."""
    for line in embedded.env_lines(settings()):
        print(line)


def show_states(states: list[embedded.ServiceState], as_json: bool) -> None:
    if as_json:
        print_json([{**asdict(state), "url": redact(state.url) if state.url else None}
                    for state in states])
        return
    table = Table("service", "state", "pid", "port", "url")
    for state in states:
        table.add_row(state.name, state.detail, str(state.pid or "-"), str(state.port or "-"),
                      redact(state.url) if state.url else "-")
    show(table)
