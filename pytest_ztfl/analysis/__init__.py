"""The statistics of the harness: pure functions over numbers (no pytest, no cluster, no
report), used by the SLO gates, the terminal summary and the report.

By job: ``base`` (defaults, input checks, the seeded one-level bootstrap every one-sample
interval uses), ``quantiles`` (quantiles of one sample and of seeds pooled), ``ratios`` (overhead
ratios and the SEC x NET interaction contrast of independent samples), ``tta`` (censored
time-to-accuracy: the Kaplan-Meier restricted mean), ``paired`` (two arms measured in blocks:
the two-level bootstrap and the minimum detectable effect). Every interval comes from
``scipy.stats.bootstrap`` (seeded, so reruns give identical numbers) or from ``paired``, except
the censored TTA mean, whose interval is analytic. Results are small frozen dataclasses with
``to_dict()`` for JSON. Degenerate input (n=1, all-equal values, a sample too small for a tail
quantile) never raises: the result says so in ``reliable``/``note``. Empty, non-finite or (for
ratios) non-positive input is a caller error and raises ``ValueError``. The methods and their
reasons are in docs/statistics.md.
"""
