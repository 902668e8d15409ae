"""`platformdb seed ...`: test, demo and load data sets."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from platformdb.cli.base import (
    JsonOption,
    app,
    context,
    print_json,
    show,
)
from platformdb.ops.context import Context

# ---------------------------------------------------------------------- seed

seed_app = typer.Typer(help="Load seed data: test, demo, load; or clear it.", no_args_is_help=True)
app.add_typer(seed_app, name="seed")


def show_seed(report: Any, as_json: bool = False) -> None:
    if as_json:
        print_json({"dataset": report.dataset, "counts": report.counts, "notes": report.notes})
        return
    table = Table("table", "rows", title=f"seed {report.dataset}")
    for name, count in report.counts.items():
        table.add_row(name, str(count))
    show(table)
    for note in report.notes:
        show(note)


def seed_context() -> Context:
    """Seeds write every store: start what is needed, then hand over the context."""
    return context(start=True)


@seed_app.command("test")
def seed_test(as_json: JsonOption = False) -> None:
    """The spec's test dataset (postgresql/seed/test_data.sql); idempotent."""
    from platformdb.ops import seed

    show_seed(seed.seed_test(seed_context()), as_json)


@seed_app.command("demo")
def seed_demo(
    seed_value: Annotated[int, typer.Option("--seed", metavar="N",
                                            help="Same seed, same data.")] = 2026,
    as_json: JsonOption = False,
) -> None:
    """A deterministic demo across PostgreSQL, ClickHouse and Redis (replaces an older one)."""
    from platformdb.ops import seed

    show_seed(seed.seed_demo(seed_context(), seed=seed_value), as_json)


@seed_app.command("load")
def seed_load(
    scale: Annotated[float, typer.Option("--scale", metavar="F",
                                         help="1 = 1,000 orgs, 10M PG / 50M CH rows.")] = 1.0,
    skip_clickhouse: Annotated[bool, typer.Option("--no-clickhouse",
                                                  help="PostgreSQL only.")] = False,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace a previous load (only it: test and demo data stay).")]
        = False,
    as_json: JsonOption = False,
) -> None:
    """The load-test dataset, streamed (COPY / Arrow batches), all or nothing."""
    from platformdb.ops import seed

    show_seed(seed.seed_load(seed_context(), scale, clickhouse=not skip_clickhouse,
                             replace=replace), as_json)


@seed_app.command("clear")
def seed_clear(
    force: Annotated[bool, typer.Option("--force", help="Also on a database that does not "
                                                        "look like a development one.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove seed data from every store; schema and reference data stay."""
    from platformdb.ops import seed

    show_seed(seed.clear(seed_context(), force=force), as_json)
