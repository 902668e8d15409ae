"""What a check reports: :class:`Finding`, and the text and JSON reports."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one line of one file.

    ``path`` is relative to the linted root, with ``/`` separators. ``info``
    findings are notes (a check that was skipped and why); they never fail a
    run. Errors and warnings both fail it: a warning is a risk a reviewer
    must either fix or waive in the file with a reason.
    """

    path: str
    line: int
    rule: str
    message: str
    severity: Severity = "error"

    def text(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


def blocking(findings: list[Finding]) -> list[Finding]:
    """The findings that make ``platformdb lint`` exit 1 (everything but notes)."""
    return [finding for finding in findings if finding.severity != "info"]


def summary(findings: list[Finding]) -> str:
    """One line: how many problems of each severity, in how many files."""
    counts = Counter(finding.severity for finding in findings)
    problems = blocking(findings)
    notes = f", {counts['info']} note{'s' * (counts['info'] != 1)}" if counts["info"] else ""
    if not problems:
        return f"lint: no problems found{notes}"
    files = len({finding.path for finding in problems})
    return (
        f"lint: {len(problems)} problem{'s' * (len(problems) != 1)} "
        f"({counts['error']} error{'s' * (counts['error'] != 1)}, "
        f"{counts['warning']} warning{'s' * (counts['warning'] != 1)}) "
        f"in {files} file{'s' * (files != 1)}{notes}"
    )


def format_text(findings: list[Finding]) -> str:
    """``path:line: rule: message`` per finding, then the summary line."""
    lines = [finding.text() for finding in sorted(findings)]
    lines.append(summary(findings))
    return "\n".join(lines) + "\n"


def format_json(findings: list[Finding]) -> str:
    """``{"findings": [...], "summary": {...}}`` for tools; keys are stable."""
    counts = Counter(finding.severity for finding in findings)
    totals: dict[str, int | bool] = {severity: counts[severity] for severity in SEVERITIES}
    totals["files"] = len({finding.path for finding in blocking(findings)})
    totals["ok"] = not blocking(findings)
    document = {"findings": [asdict(finding) for finding in sorted(findings)], "summary": totals}
    return json.dumps(document, indent=2) + "\n"
