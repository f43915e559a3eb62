"""The router as an MLflow pyfunc model. MLflow runs this file when it loads the model ("models from code").

It needs only MLflow, pandas and the runtime package, stored with the model as `code/tierwise_classifier`, so the
model loads wherever MLflow runs, Spark UDFs included, without tierwise installed. tierwise never imports
this module: `pyfunc.log_router_model` logs it as a file.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel
from tierwise_classifier.decisions import decision_columns
from tierwise_classifier.request import RouteOptions
from tierwise_classifier.router import Router

BUNDLE_ARTIFACT = "bundle"


class RouterModel(PythonModel):
    """`predict(DataFrame with a prompt column)` -> per prompt: tier, model, fallback chain, P(success) per tier."""

    def load_context(self, context: Any) -> None:
        self.router = Router.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Route every prompt of the frame; `params` may carry quality_target and mode."""
        if "prompt" not in model_input.columns:
            raise ValueError(f"input needs a 'prompt' column, got {list(model_input.columns)}")
        params = params or {}
        options = RouteOptions(quality_target=params.get("quality_target"), mode=params.get("mode") or "threshold")
        predictions = self.router.predict_batch(model_input["prompt"].fillna("").astype(str).tolist(), options)
        return pd.DataFrame(decision_columns(predictions, self.router.ladder.names))


mlflow.models.set_model(RouterModel())
