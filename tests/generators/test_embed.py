"""The bundled MiniLM through the NumPy forward pass matches sentence-transformers."""

from __future__ import annotations

import numpy as np

from generators.embed import NumpyBertEmbedder, bundled_minilm_path, get_embedder


def test_numpy_forward_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    texts = ["Hi, I am Zoe and I love pierogi", "What's the weather like?", "a" * 3000, "Zażółć gęślą jaźń 🍜"]
    ours = NumpyBertEmbedder(bundled_minilm_path()).embed(texts)
    ref = SentenceTransformer(str(bundled_minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    assert np.min(np.sum(ours * ref, axis=1)) > 0.9999


def test_similar_meanings_are_closer_than_unrelated_ones():
    e = get_embedder()
    a, b, c = e.embed(["I adore dumplings", "dumplings are my favourite food", "the train leaves at noon"])
    assert a @ b > a @ c + 0.3
    assert np.allclose(np.linalg.norm([a, b, c], axis=1), 1.0, atol=1e-5)


def test_cache_returns_identical_vectors_and_batches_mix():
    e = NumpyBertEmbedder(bundled_minilm_path(), cache_size=2)
    one = e.embed(["alpha"])[0]
    mixed = e.embed(["beta", "alpha", "gamma"])
    assert np.array_equal(mixed[1], one)
    assert len(e._cache) == 2  # bounded
    assert np.allclose(e.embed(["beta"])[0], mixed[0], atol=1e-6)


async def test_concurrent_calls_share_one_forward_pass():
    import asyncio

    from generators.embed import EmbedBatcher

    inner = NumpyBertEmbedder(bundled_minilm_path())
    calls = []
    real = inner.embed

    def counting(texts):
        calls.append(len(texts))
        return real(texts)

    inner.embed = counting
    batcher = EmbedBatcher(inner)
    texts = [f"sentence number {i} about dumplings" for i in range(10)]
    results = await asyncio.gather(*(batcher.embed([t]) for t in texts))
    assert calls == [10]  # one pass for ten concurrent turns
    direct = NumpyBertEmbedder(bundled_minilm_path()).embed(texts)
    assert all(np.allclose(r[0], d, atol=1e-5) for r, d in zip(results, direct))
