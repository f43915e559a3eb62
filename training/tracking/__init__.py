"""MLflow integration: every training run tracked, every model a registered version, gated promotion.

MLflow is imported only inside this package, and the package only by the commands that need it, so
`tierwise --help` and the serving hot path never pay for it. Importing the package quiets MLflow for
command-line use (INFO lines, artifact progress bars, telemetry) unless the user set those variables.
"""

from __future__ import annotations

import os

for _name, _value in (
    ("MLFLOW_LOGGING_LEVEL", "WARNING"),
    ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
):
    os.environ.setdefault(_name, _value)
