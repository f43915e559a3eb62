"""Logs larger than memory: labelling reads the attempt logs through polars' streaming engine, keeps one row
per request and each prompt once, and training embeds each distinct prompt once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from tierwise.training.embedding.embed import embed
from tierwise.training.embedding.encoders import StaticEncoder
from tierwise.training.fit.head import TierHead

from tests.helpers import label_files, write_rows
from tests.peak_memory import run_measured

HAIKU, SONNET, OPUS = "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"
REQUESTS, ATTEMPTS_PER_REQUEST, RESPONSE_CHARS = 4000, 25, 8000


def write_wordy_log(path: Path) -> int:
    """Attempts whose own text (a distinct 8 kB response each: 800 MB in all) dwarfs what labelling needs; the
    file stays small (the text compresses). Written a slice of requests at a time. Returns its text bytes."""
    writer = None
    for first in range(0, REQUESTS, 200):
        ids = np.arange(first, first + 200)
        frame = pl.DataFrame(
            {"n": np.repeat(ids, ATTEMPTS_PER_REQUEST), "k": np.tile(np.arange(ATTEMPTS_PER_REQUEST), len(ids))}
        ).select(
            pl.format("r{}", "n").alias("request_id"),
            pl.format("question {}: please explain", "n").alias("prompt"),
            pl.when(pl.col("k") % 3 == 0).then(pl.lit(HAIKU)).otherwise(pl.lit(OPUS)).alias("model"),
            (pl.col("k") % 2 == 0).alias("success"),
            pl.concat_str([pl.format("answer {}-{} ", "n", "k"), pl.lit("x" * RESPONSE_CHARS)]).alias("response"),
        )
        table = frame.to_arrow()
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return REQUESTS * ATTEMPTS_PER_REQUEST * RESPONSE_CHARS


def test_labelling_holds_far_less_than_the_logs_text(tmp_path):
    text_bytes = write_wordy_log(tmp_path / "attempts.parquet")
    assert (tmp_path / "attempts.parquet").stat().st_size < 20e6
    args = ["label", str(tmp_path / "attempts.parquet"), "--out", str(tmp_path / "labels.parquet")]
    run = run_measured([sys.executable, "-m", "tierwise", *args])
    assert run.returncode == 0, run.output
    text_mb = text_bytes / 2**20
    assert run.peak_rss_mb < text_mb / 2, f"peak {run.peak_rss_mb:.0f} MiB for {text_mb:.0f} MiB of attempt text"
    labels = pl.read_parquet(tmp_path / "labels.parquet")
    assert labels.height == REQUESTS and labels["request_id"].head(2).to_list() == ["r0", "r1"]


def attempt(request_id: str, model: str, success: bool, **extra) -> dict:
    return {"request_id": request_id, "prompt": f"question {request_id}", "model": model, "success": success, **extra}


def test_requests_come_in_order_of_first_appearance_with_their_first_logged_values(tmp_path):
    first = write_rows(
        [
            attempt("b", HAIKU, False, split=None, category="law"),
            attempt("a", HAIKU, True, split="test", category=None),
            attempt("b", SONNET, True, split="train", category="math"),
        ],
        tmp_path / "1.jsonl",
    )
    second = write_rows([attempt("c", OPUS, True, split="train", category=None)], tmp_path / "2.parquet")
    _, labels = label_files([first, second])
    rows = labels.frame.select("request_id", "split", "category").rows()
    # b's first attempt logs no split: its first logged split is the later attempt's
    assert rows == [("b", "train", "law"), ("a", "test", None), ("c", "train", None)]


def test_each_distinct_prompt_is_embedded_once(tmp_path, monkeypatch):
    encoder = StaticEncoder.load()  # from the usual cache: distilled once, not again for this test
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(tmp_path))  # the embedding cache under test starts empty
    prompts = pl.Series([f"prompt {i % 7}" for i in range(50)])
    vectors = embed(prompts, encoder)
    (shard,) = tmp_path.rglob("shard-*.npz")
    with np.load(shard) as data:
        assert len(data["keys"]) == 7
    np.testing.assert_array_equal(vectors[0], vectors[7])
    np.testing.assert_allclose(vectors[:7], encoder.encode(prompts.head(7).to_list()), atol=1e-7)


def test_the_float32_head_gives_the_float64_fit_within_1e_4():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 32))
    chances = 1 / (1 + np.exp(-(X[:, :3] * [1.5, 0.5, -1.0] + [0.0, 1.0, 2.0])))
    S = (rng.random((3000, 3)) < chances).astype(np.float64)
    S[:500, 0] = np.nan  # a tier some requests never tried
    head = TierHead().fit(X, S)
    known = [~np.isnan(S[:, k]) for k in range(3)]
    float64 = [TierHead()._fit_tier(X[known[k]], S[known[k], k], np.ones(known[k].sum())) for k in range(3)]
    reference = 1 / (1 + np.exp(-(X @ np.stack([w for w, _ in float64], axis=1) + [b for _, b in float64])))
    np.testing.assert_allclose(head.predict_proba(X), reference, atol=1e-4)
    assert not np.array_equal(head.predict_proba(X), reference)  # the fits really differ in precision


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_text_formats_label_as_parquet_does(tmp_path, suffix):
    rows = [attempt(f"r{i}", [HAIKU, SONNET, OPUS][i % 3], i % 2 == 0, split="test") for i in range(30)]
    _, reference = label_files([write_rows(rows, tmp_path / "a.parquet")])
    _, labels = label_files([write_rows(rows, tmp_path / f"a{suffix}")])
    assert labels.frame.equals(reference.frame)
