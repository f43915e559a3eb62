"""Prompts as vectors: the encoders and their on-disk embedding cache, shared by fitting a head, the k-NN baseline
of evaluation and the audit's cross-fitted routers."""
