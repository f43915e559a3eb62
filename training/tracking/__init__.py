"""MLflow runs: every training run tracked, comparisons, the pyfunc model, and the one place champion decisions are
made (`promotion`). The store, its lock and the registry it talks to live below, in `tierwise.registry`."""
