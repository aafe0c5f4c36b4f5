"""The harness: matrix, fixtures, measurement, statistics, SLO gates and the report."""
