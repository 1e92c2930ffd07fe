"""The results report (``dfss-report``): tables, targets and plots from a ``dfss-results`` folder."""
