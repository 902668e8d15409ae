"""``platformdb`` (and ``python -m platformdb``): the CLI, or one line naming its extra.

The console script is installed with the runtime library, but the CLI itself
comes with the ``cli`` extra; without it the command says so instead of
printing an ImportError traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from platformdb.cli import main as cli_main
    except ModuleNotFoundError as exc:
        from platformdb.extras import EXTRA_OF, hint

        if exc.name is None or exc.name.split(".")[0] not in EXTRA_OF:
            raise
        sys.stderr.write(f"error: the platformdb command needs {exc.name}, which is not "
                         f"installed: {hint(exc.name)}\n")
        sys.exit(2)
    cli_main()


if __name__ == "__main__":
    main()
