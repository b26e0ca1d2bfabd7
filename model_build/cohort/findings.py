"""What validating a cohort found: one :class:`CohortFinding` per problem, gathered in a report.

Every finding names the file, the spreadsheet row (header = row 1) and the column it is about,
and carries a fix hint, so a data manager can correct the cohort without reading code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sarco_core.errors import SarcoError

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class CohortFinding:
    """One problem (``error``), doubt (``warning``) or remark (``info``) about a cohort."""

    severity: str
    file: str
    row: int | None
    column: str | None
    message: str
    hint: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Place:
    """Where a finding points (file, row, column); builds findings so callers never forget one."""

    file: str
    row: int | None = None
    column: str | None = None

    def at(self, row: int | None = None, column: str | None = None) -> Place:
        return Place(self.file, row, column)

    def error(self, message: str, hint: str) -> CohortFinding:
        return CohortFinding("error", self.file, self.row, self.column, message, hint)

    def warning(self, message: str, hint: str) -> CohortFinding:
        return CohortFinding("warning", self.file, self.row, self.column, message, hint)

    def info(self, message: str, hint: str) -> CohortFinding:
        return CohortFinding("info", self.file, self.row, self.column, message, hint)


@dataclass
class ValidationReport:
    """All findings about one cohort folder, a few counts describing it, and the media table.

    ``ok`` is the cohort's usability: warnings and infos do not make it unusable. ``media`` has
    one dict per listed file (empty with ``--no-media``): listing, row, participant, path and
    what was found in the file (format, size, frames, scan box, pixel size, burned-in text).
    """

    root: Path
    findings: list[CohortFinding] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    media_checked: bool = True
    media: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(finding.severity == "error" for finding in self.findings)

    def count(self, severity: str) -> int:
        return sum(finding.severity == severity for finding in self.findings)

    def to_dict(self) -> dict:
        severities = Counter(finding.severity for finding in self.findings)
        return {
            "cohort": str(self.root),
            "ok": self.ok,
            "media_checked": self.media_checked,
            "counts": {severity: severities.get(severity, 0) for severity in SEVERITIES},
            "summary": self.summary,
            "findings": [finding.to_dict() for finding in self.findings],
            "media": self.media,
        }


class CohortError(SarcoError, ValueError):
    """The cohort cannot be used; ``findings`` lists every reason (file, row, column, fix)."""

    def __init__(self, findings: list[CohortFinding]):
        self.findings = findings
        errors = [finding for finding in findings if finding.severity == "error"]
        lines = [f"{len(errors)} error(s) make this cohort unusable (run `sarco validate` for all findings):"]
        for finding in errors[:10]:
            lines.append(f"  {describe(finding)}")
        if len(errors) > 10:
            lines.append(f"  ... and {len(errors) - 10} more")
        super().__init__("\n".join(lines))


def describe(finding: CohortFinding) -> str:
    """One line for logs and exceptions: ``file row N, column C: message; fix: hint``."""
    where = finding.file
    if finding.row is not None:
        where += f" row {finding.row}"
    if finding.column is not None:
        where += f", column {finding.column}"
    return f"{where}: {finding.message}; fix: {finding.hint}"
