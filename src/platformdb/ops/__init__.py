"""The command layer: one function per ``platformdb`` command, as alembic's ``command.py``.

Each function takes what the command needs (the endpoints, options, paths)
and returns what it did; the CLI parses arguments into it and renders the
result, so a Python caller gets exactly the CLI's behaviour.
"""
