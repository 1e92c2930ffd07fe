"""The paper's experiments as one resumable job (``dfss-results``): plan, runs, index."""
