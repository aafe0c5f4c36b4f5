"""Test-suite hooks: the failure taxonomy's confusion matrix over the session's live runs
(the repository-wide fixtures and the privileged-test policy are in the root conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The failure taxonomy's confusion matrix over this session's live runs (if any ran)."""
    import taxonomy_record

    if not taxonomy_record.RECORDS:
        return
    text = taxonomy_record.markdown()
    terminalreporter.write_sep("=", "ztfl failure taxonomy: confusion matrix (blind)")
    terminalreporter.write_line(text)
    out = os.environ.get("ZTFL_CONFUSION_OUT")
    if out:
        Path(out).write_text(text + "\n")
