"""Export the whole inference path (token ids -> embedding -> pooling -> head) as one ONNX graph in a bundle."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tierwise.classifier.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, check_bundle_out, write_manifest
from tierwise.classifier.encoding import NORM_EPS
from tierwise.classifier.outputs import replace_dir, staging_dir
from tierwise.classifier.router import ATTENTION_MASK, INPUT_IDS, OUTPUT
from tierwise.training.embedding.encoders import Encoder, MiniLMEncoder, StaticEncoder
from tierwise.training.fit.head import TierHead

OPSET = 17


def _head_nodes(pooled: str, head: TierHead) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """MatMul + Add + Sigmoid from a normalised embedding to per-tier probabilities."""
    weights = numpy_helper.from_array(head.coef_.astype(np.float32), "head_weight")
    bias = numpy_helper.from_array(head.intercept_.astype(np.float32), "head_bias")
    nodes = [
        helper.make_node("MatMul", [pooled, "head_weight"], ["head_logits_raw"]),
        helper.make_node("Add", ["head_logits_raw", "head_bias"], ["head_logits"]),
        helper.make_node("Sigmoid", ["head_logits"], [OUTPUT]),
    ]
    return nodes, [weights, bias]


def static_graph(table: np.ndarray, head: TierHead) -> onnx.ModelProto:
    """Gather token rows, masked sum, L2-normalise, then the head: the static encoder fused with its head.

    Normalising the masked sum gives the normalised mean (the count cancels), so the graph never divides
    by the token count. The masked sum is one batched MatMul (mask row x token vectors), and the norm is
    one ReduceL2: every node costs a kernel dispatch on the served hot path.
    """
    initializers = [
        numpy_helper.from_array(table.astype(np.float32), "token_table"),
        numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis_tokens"),
        numpy_helper.from_array(np.asarray(NORM_EPS, dtype=np.float32), "norm_eps"),
    ]
    nodes = [
        helper.make_node("Gather", ["token_table", INPUT_IDS], ["token_vectors"]),
        helper.make_node("Cast", [ATTENTION_MASK], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_float", "axis_tokens"], ["mask_row"]),
        helper.make_node("MatMul", ["mask_row", "token_vectors"], ["summed_row"]),
        helper.make_node("Squeeze", ["summed_row", "axis_tokens"], ["summed"]),
        helper.make_node("ReduceL2", ["summed"], ["norm_raw"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm_raw", "norm_eps"], ["norm"]),
        helper.make_node("Div", ["summed", "norm"], ["embedding"]),
    ]
    head_nodes, head_weights = _head_nodes("embedding", head)
    graph = helper.make_graph(
        nodes + head_nodes,
        "tierwise_static_router",
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", head.n_tiers_])],
        initializer=initializers + head_weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tierwise")
    onnx.checker.check_model(model)
    return model


def minilm_graph(encoder: MiniLMEncoder, head: TierHead, workdir: Path) -> onnx.ModelProto:
    """MiniLM + mean pooling + normalisation + head, exported from torch (the legacy exporter handles BERT)."""
    import torch

    class FusedRouter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = encoder.model[0].auto_model
            self.weight = torch.nn.Parameter(torch.tensor(head.coef_, dtype=torch.float32), requires_grad=False)
            self.bias = torch.nn.Parameter(torch.tensor(head.intercept_, dtype=torch.float32), requires_grad=False)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            embedding = torch.nn.functional.normalize(pooled, dim=1, eps=NORM_EPS)
            return torch.sigmoid(embedding @ self.weight + self.bias)

    module = FusedRouter().eval()
    sample = torch.ones((1, 8), dtype=torch.int64)
    path = workdir / "minilm.onnx"
    # The tracer warns about Python-side shape logic in the BERT code; the parity tests check the graph instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (sample, torch.ones_like(sample)),
            str(path),
            input_names=[INPUT_IDS, ATTENTION_MASK],
            output_names=[OUTPUT],
            dynamic_axes={INPUT_IDS: {0: "batch", 1: "tokens"}, ATTENTION_MASK: {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return onnx.load(str(path))


def export_bundle(out_dir: str | Path, encoder: Encoder, head: TierHead, manifest: Manifest) -> Manifest:
    """Write graph, tokenizer and manifest into a fresh directory, then move it into place whole."""
    out = Path(out_dir)
    check_bundle_out(out)
    staging = staging_dir(out)
    try:
        if isinstance(encoder, StaticEncoder):
            graph = static_graph(encoder.table, head)
        else:
            graph = minilm_graph(encoder, head, staging)
            (staging / "minilm.onnx").unlink()
        onnx.save(graph, str(staging / MODEL_FILE))
        shutil.copyfile(encoder.tokenizer_path, staging / TOKENIZER_FILE)
        stamped = write_manifest(staging, manifest)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stamped
