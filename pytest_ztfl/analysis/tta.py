"""Mean time-to-accuracy over runs, right-censored where the target was not reached: the
Kaplan-Meier restricted mean (RMST) with its analytic (Greenwood-type) interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from pytest_ztfl.analysis.base import DEFAULT_CONFIDENCE, as_sample, check_confidence, jsonable


@dataclass(frozen=True)
class TTAEstimate:
    """Mean time-to-accuracy over seeds/runs, some of which may be censored.

    ``estimate`` is the Kaplan-Meier restricted mean up to ``tau`` (the area under the KM
    survival curve on [0, tau]). If nothing is censored it equals the sample mean. If the
    largest time is censored (``restricted`` True) it is a lower bound for the true mean,
    which the data cannot identify. ``mean_reached`` is the plain mean over runs that reached
    the target: reported for comparison only, it is biased low when runs are censored.
    """

    estimate: float
    ci_low: float
    ci_high: float
    tau: float
    restricted: bool
    n: int
    n_censored: int
    mean_reached: float
    confidence: float
    method: str
    note: str = ""

    @property
    def n_reached(self) -> int:
        return self.n - self.n_censored

    def to_dict(self) -> dict[str, Any]:
        return {**jsonable(asdict(self)), "n_reached": self.n_reached}


def tta_mean(
    times: npt.ArrayLike,
    reached: npt.ArrayLike,
    *,
    tau: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TTAEstimate:
    """Mean time-to-accuracy over runs, right-censored where the target was not reached.

    ``times[i]`` is run i's time to the target if ``reached[i]``, else the time the run
    ended without reaching it (its censoring time). The estimate is the Kaplan-Meier
    restricted mean survival time (RMST) on [0, tau], with the KM curve from
    ``scipy.stats.ecdf`` on ``scipy.stats.CensoredData``; ``tau`` defaults to the largest
    observed time. The CI is estimate +- t(df) * se, with se from the Greenwood-type RMST
    variance (Klein & Moeschberger, eq. 4.5.2) times n/(n-1), and df = (runs that reached the
    target) - 1. With nothing censored this is exactly the Student-t interval of the mean.
    """
    check_confidence(confidence)
    t = as_sample(times, "times")
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    ev = np.asarray(reached, dtype=bool).ravel()
    if ev.shape != t.shape:
        raise ValueError(f"times has {t.size} values but reached has {ev.size}")
    n = int(t.size)
    n_events = int(ev.sum())
    n_censored = n - n_events
    mean_reached = float(np.mean(t[ev])) if n_events else math.nan
    method = "Kaplan-Meier restricted mean; Greenwood-type variance; Student t (reached - 1 df)"
    t_max = float(t.max())
    if tau is None:
        tau = t_max
    elif not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive finite number, not {tau}")

    def result(est: float, lo: float, hi: float, restricted: bool, note: str) -> TTAEstimate:
        return TTAEstimate(
            estimate=est,
            ci_low=lo,
            ci_high=hi,
            tau=float(tau),
            restricted=restricted,
            n=n,
            n_censored=n_censored,
            mean_reached=mean_reached,
            confidence=confidence,
            method=method,
            note=note,
        )

    if n_events == 0:
        return result(
            math.nan,
            math.nan,
            math.nan,
            True,
            f"target never reached in {n} run(s): the mean TTA is > {t_max:.6g} and not estimable",
        )

    km = sps.ecdf(sps.CensoredData(uncensored=t[ev], right=t[~ev])).sf
    # KM survival is a right-continuous step function: S = 1 before the first jump, then
    # km.probabilities[j] on [quantiles[j], quantiles[j+1]).
    knots = np.concatenate(([0.0], km.quantiles.astype(np.float64)))
    surv = np.concatenate(([1.0], km.probabilities.astype(np.float64)))

    def area(lo: float, hi: float) -> float:
        """Integral of the KM curve over [lo, hi] (constant beyond the last knot)."""
        if hi <= lo:
            return 0.0
        edges = np.clip(np.concatenate((knots, [math.inf])), lo, hi)
        return float(np.sum(surv * np.diff(edges)))

    rmst = area(0.0, tau)
    # The last observation censored (before tau) means S never reaches 0: the true mean is
    # beyond what the data show, so the RMST is only a lower bound.
    last_is_event = bool(ev[t == t_max].any())
    restricted = not (last_is_event and tau >= t_max)
    notes = []
    if restricted:
        notes.append(
            f"restricted mean up to tau={float(tau):.6g} (a lower bound for the mean TTA: "
            f"{n_censored} of {n} run(s) censored)"
            if n_censored
            else f"restricted mean up to tau={float(tau):.6g} < largest TTA"
        )
    if tau > t_max and not last_is_event:
        notes.append(f"KM curve extended flat from the last observation {t_max:.6g} to tau")

    event_times = np.unique(t[ev & (t <= tau)])
    var = 0.0
    for tj in event_times:
        at_risk = int(np.sum(t >= tj))
        d = int(np.sum(ev & (t == tj)))
        a = area(float(tj), tau)
        if a > 0.0:  # a == 0 also covers at_risk == d (the curve drops to 0 at tj)
            var += a * a * d / (at_risk * (at_risk - d))
    if n_events < 2:
        notes.append("fewer than 2 runs reached the target: no CI")
        return result(rmst, math.nan, math.nan, restricted, "; ".join(notes))
    se = math.sqrt(var * n / (n - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n_events - 1)) * se
    return result(rmst, rmst - half, rmst + half, restricted, "; ".join(notes))
