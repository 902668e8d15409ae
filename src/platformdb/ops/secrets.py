"""``platformdb secrets rotate``: re-encrypt every DSP credential under the active key."""

from __future__ import annotations

from platformdb import secrets
from platformdb.errors import when_interrupted
from platformdb.ops.context import Context, context
from platformdb.secrets import RotationReport
from platformdb.types import Endpoints


def rotate(target: Context | Endpoints, *, batch_size: int = 500,
           dry_run: bool = False) -> RotationReport:
    """Re-encrypt under the first key of the context's ``PLATFORMDB_SECRET_KEYS``."""
    ctx = context(target)
    keys = secrets.KeyRing.from_environment(
        {secrets.ENV_VAR: ctx.secret_keys} if ctx.secret_keys else {})
    with when_interrupted("the batches re-encrypted so far stay (each is one transaction); "
                          "run it again to finish"):
        return secrets.rotate_dsp_credentials(ctx.url("postgresql"), keys,
                                              batch_size=batch_size, dry_run=dry_run)
