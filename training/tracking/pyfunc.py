"""The router as an MLflow pyfunc model, so any MLflow consumer (batch scoring, Spark UDFs) can route.

`mlflow.pyfunc.load_model(uri).predict(DataFrame with a "prompt" column)` returns one row per prompt:
`tier`, `model`, `fallback_chain` (tiers joined with ">") and `p_<tier>` for every tier.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

BUNDLE_ARTIFACT = "bundle"


class RouterModel(mlflow.pyfunc.PythonModel):
    """Wraps `classifier.Router`; the bundle travels as the model's `bundle` artifact."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from classifier.router import Router

        self.router = Router.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Route every prompt of the frame; `params` may carry quality_target and mode."""
        if "prompt" not in model_input.columns:
            raise ValueError(f"input needs a 'prompt' column, got {list(model_input.columns)}")
        params = params or {}
        predictions = self.router.predict_batch(
            [str(p) for p in model_input["prompt"].tolist()],
            quality_target=params.get("quality_target"),
            mode=params.get("mode", "threshold"),
        )
        return pd.DataFrame(
            {
                "tier": [p.tier for p in predictions],
                "model": [p.model for p in predictions],
                "fallback_chain": [">".join(p.fallback_chain) for p in predictions],
                **{f"p_{tier}": [p.probabilities[tier] for p in predictions] for tier in self.router.ladder.names},
            }
        )
