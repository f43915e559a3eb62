"""The router as an MLflow pyfunc model, so any MLflow consumer (batch scoring, Spark UDFs) can route.

`mlflow.pyfunc.load_model(uri).predict(DataFrame with a "prompt" column)` returns one row per prompt, the
columns of `tierwise.classifier.decisions` (`tier`, `model`, `fallback_chain`, `p_<tier>` for every tier); params
`quality_target` and `mode` are passed to the router. The model is `router_model.py` logged as code, with the
bundle as its `bundle` artifact and the `tierwise.classifier` package as its only code, stored under the name
`tierwise_classifier` (its imports are relative, so it runs under any name, without tierwise installed); its pip
requirements are what that code imports, pinned to the versions it was logged with.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tierwise.classifier.decisions import decision_schema
from tierwise.classifier.tiers import TierLadder
from tierwise.registry.models import BUNDLE_ARTIFACT

from tierwise import classifier

CODE_PACKAGE = "tierwise_classifier"  # the name router_model.py imports the stored runtime by
MODEL_CODE = Path(__file__).with_name("router_model.py")
# Everything router_model.py and the runtime package import besides the standard library.
RUNTIME_DISTRIBUTIONS = ("mlflow", "pandas", "numpy", "onnxruntime", "tokenizers")


def pip_requirements() -> list[str]:
    """The pyfunc's requirements, pinned to the installed versions."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in RUNTIME_DISTRIBUTIONS]


def signature(ladder: TierLadder):
    """Input: a prompt column. Output: tier, model, fallback chain, one probability column per tier. Params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "prompt")]),
        outputs=Schema([ColSpec(kind, name) for name, kind in decision_schema(ladder.names)]),
        params=ParamSchema([ParamSpec("quality_target", "double", None), ParamSpec("mode", "string", "threshold")]),
    )


@contextlib.contextmanager
def _stored_runtime_importable(folder: str) -> Iterator[None]:
    """MLflow runs router_model.py while logging it: let it import the runtime copy it will be stored with."""
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)
        for module in [m for m in sys.modules if m.split(".")[0] == CODE_PACKAGE]:
            del sys.modules[module]


def log_router_model(name: str, bundle_dir: str | Path, ladder: TierLadder):
    """Log the bundle as a pyfunc model of the active run; returns MLflow's ModelInfo."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="tierwise-pyfunc-") as scratch, _stored_runtime_importable(scratch):
        code = Path(scratch) / CODE_PACKAGE
        shutil.copytree(Path(classifier.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[str(code)],
            signature=signature(ladder),
            pip_requirements=pip_requirements(),
        )
