"""The plugin's warnings: one base, ``ZtflWarning``, so a project can turn them all into errors
(``filterwarnings = error::pytest_ztfl.ZtflWarning``) or silence them, as pytest's own
``PytestWarning`` allows."""

from __future__ import annotations


class ZtflWarning(UserWarning):
    """Base of every warning pytest-ztfl issues."""


class ZtflPolicyWarning(ZtflWarning):
    """A NetworkPolicy of a cell that the policy linter flags (it selects no pod, ...)."""


class ZtflInconclusiveWarning(ZtflWarning):
    """An SLO's point estimate is beyond its limit but the confidence interval straddles it."""


class ZtflUnsuccessfulRunWarning(ZtflWarning):
    """The run missed the seed study's success definition, but no SLO gate failed."""


class ZtflInstrumentWarning(ZtflWarning):
    """A check arm found the instrument wanting here: an A/A difference outside the noise, or
    a known injected delay not found."""


class ZtflCalibrationWarning(ZtflWarning):
    """A network profile, measured on this machine, misses its calibration targets."""


class ZtflRoundBudgetWarning(ZtflWarning):
    """A network profile's rates cannot move the model down and up within the round deadline."""
