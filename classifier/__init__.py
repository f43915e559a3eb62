"""tierwise's serving-side package: tier ladder, routing policy and the ONNX `Router` runtime."""

from classifier.bundle import BundleError
from classifier.policy import PolicyError
from classifier.router import Prediction, Router

__all__ = ["BundleError", "PolicyError", "Prediction", "Router"]
