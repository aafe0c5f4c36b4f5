"""The harness: matrix, fixtures, measurement, statistics, SLO gates and the report.

Exported: the plugin's warnings (``pytest_ztfl.ZtflWarning`` is the base of all of them)."""

from pytest_ztfl.warning_types import (
    ZtflCalibrationWarning,
    ZtflInconclusiveWarning,
    ZtflInstrumentWarning,
    ZtflPolicyWarning,
    ZtflRoundBudgetWarning,
    ZtflUnsuccessfulRunWarning,
    ZtflWarning,
)

__all__ = [
    "ZtflCalibrationWarning",
    "ZtflInconclusiveWarning",
    "ZtflInstrumentWarning",
    "ZtflPolicyWarning",
    "ZtflRoundBudgetWarning",
    "ZtflUnsuccessfulRunWarning",
    "ZtflWarning",
]
