"""Fitting a router: the calibrated head, the tiers' time models, the policy and its guarded threshold, the ONNX
export, and `train_bundle`, which fits, exports and evaluates once (with `tierwise.training.evaluation`)."""
