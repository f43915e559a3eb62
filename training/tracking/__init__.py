"""MLflow integration: every training run tracked, every model a registered version, gated promotion."""
