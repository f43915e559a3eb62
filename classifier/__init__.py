"""tierwise's serving-side package: tier ladder, routing policy and the ONNX `Router` runtime."""

from .bundle import BundleError
from .policy import PolicyError
from .router import Prediction, Router

__all__ = ["BundleError", "PolicyError", "Prediction", "Router"]
