"""`platformdb secrets ...`: encrypted secrets (DSP credentials) and their keys."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from platformdb.cli.base import (
    DryRunOption,
    JsonOption,
    app,
    context,
    print_json,
    show,
    warn,
)
from platformdb.errors import CheckFailed
from platformdb.ops import secrets

secrets_app = typer.Typer(help="Encrypted secrets (DSP credentials) and their keys.",
                          no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate(
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N",
                                            help="Rows per transaction.")] = 500,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Re-encrypt every DSP credential under the first key of PLATFORMDB_SECRET_KEYS."""
    report = secrets.rotate(context(start=True, stores=["postgresql"]), batch_size=batch_size,
                            dry_run=dry_run)
    if as_json:
        print_json(asdict(report))
    else:
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        show(f"dsp_connectors: {verb} {report.rotated} credential(s) under key "
             f"{report.active_key_id} in {report.batches} batch(es)")
        for failure in report.failed:
            warn(f"not rotated: {failure}")
    if report.failed:
        raise CheckFailed(f"secrets rotate: {len(report.failed)} credential(s) could not be "
                          "decrypted with the configured keys")
