"""report.md: one module per group of sections, by what each is for, assembled by
``document`` in the report's order. Every table names its source files and n.

``summary`` (what a reader meets first: the answers, the instrument's checks, the data),
``meta`` (run metadata), ``design`` (the measurement design and the NET emulation during the
runs), ``checks`` (the instrument's own checks: A/A and known delays), ``cells`` (per-cell
table and where a round's time goes), ``outcomes`` (cell groups, SLO verdicts, this run's
verdict on each of the seed study's claims); ``common`` holds what they share.
"""
