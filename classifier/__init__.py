"""tierwise's serving-side package: tier ladder, routing request and policy, and the ONNX `Router` runtime."""

from .bundle import BundleError
from .limits import FieldError
from .request import RouteOptions, RouteRequest
from .router import Prediction, Router

__all__ = ["BundleError", "FieldError", "Prediction", "RouteOptions", "RouteRequest", "Router"]
