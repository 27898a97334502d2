"""Training rounds and model versions: starting, following, cancelling rounds; promoting policies."""
