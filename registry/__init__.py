"""Where a served model comes from: a bundle directory or a registered MLflow version, the store that holds it
(which store, who may create it, its lock), and the local cache of downloaded bundles. The layer between the
runtime (`tierwise.classifier`) and both `tierwise.serving` and `tierwise.training`, which never import each other.

MLflow is imported only inside functions that need it, so `tierwise --help` and the serving hot path never pay for
it. Importing the package quiets MLflow for command-line use (INFO lines, artifact progress bars, telemetry) unless
the user set those variables.
"""

from __future__ import annotations

import os

for _name, _value in (
    ("MLFLOW_LOGGING_LEVEL", "WARNING"),
    ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
):
    os.environ.setdefault(_name, _value)
