"""pytest entry point (``pytest11``): options and hooks only; the logic lives in plain modules."""
