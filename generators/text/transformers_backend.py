"""Text generation in-process with Hugging Face ``transformers``.

The model and tokenizer load once per process (shared by every generator with
the same model, device and dtype), lazily, in a worker thread, so the event
loop never blocks on a multi-gigabyte load. Generation runs in a thread too;
``stream`` yields decoded text as tokens come out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .base import TextGenerationError, TextRequest, estimate_tokens

log = logging.getLogger(__name__)

_ALTERNATIVES = (
    "set VCHAR_TEXT_MODEL to a local folder holding the model, "
    "or VCHAR_TEXT_BACKEND=openai with VCHAR_TEXT_BASE_URL pointing at a server "
    "(vLLM, Ollama, llama.cpp), or VCHAR_TEXT_BACKEND=lite"
)

_DTYPES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    device: str
    dtype: str
    # One generation at a time per model: concurrent generate() calls on one set
    # of weights would only contend for the same compute and memory.
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[tuple[str, str, str], _Loaded] = {}
_CACHE_LOCK = threading.Lock()

_TRUE = ("1", "true", "yes", "on")
HUB_PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class ModelSource:
    """Where a model would load from: ``folder`` (a local directory), ``cache`` (a hub id
    already downloaded) or ``download`` (a hub id fetched on first use)."""

    kind: str
    detail: str
    local_files_only: bool = False


def hub_offline() -> bool:
    """Offline mode as huggingface_hub and transformers understand it."""
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - comes with transformers
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except (ImportError, AttributeError):  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> tuple[bool, str]:
    """Whether a TCP connection to the hub (or the HTTPS proxy in the way) opens within
    ``timeout`` seconds, and what was tried. Name resolution counts toward the timeout."""
    from urllib.parse import urlsplit

    endpoint = _hub_endpoint()
    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(v)), None)
    target = urlsplit(proxy if proxy else endpoint)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme in ("https", "") else 80)
    what = f"{'proxy ' if proxy else ''}{host}:{port}"
    if not host:
        return False, what
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, name="vchar-hub-probe", daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0]), what


def locate_model(model_id: str, *, probe: bool = True) -> ModelSource:
    """Find where ``model_id`` loads from without touching the network more than one short
    connection test. Raises :class:`TextGenerationError` at once when it cannot load:
    a folder that does not exist, or a hub id that is not in the local cache while the
    hub is switched off (``HF_HUB_OFFLINE=1``) or unreachable."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return ModelSource("folder", str(path))
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError as exc:  # pragma: no cover - comes with transformers
        raise TextGenerationError(
            f"the transformers text backend needs the transformers package "
            f"(pip install 'vchar[transformers]'): {exc}; or {_ALTERNATIVES}"
        ) from exc
    try:
        validate_repo_id(model_id)
    except HFValidationError:
        raise TextGenerationError(
            f"VCHAR_TEXT_MODEL={model_id}: there is no such folder, and it is not a model id of the "
            f"Hugging Face hub (like Qwen/Qwen2.5-0.5B-Instruct); {_ALTERNATIVES}"
        ) from None
    cached = try_to_load_from_cache(model_id, "config.json")
    if isinstance(cached, str):
        if hub_offline():
            return ModelSource("cache", cached, local_files_only=True)
        if probe:
            up, _ = hub_reachable()
            if not up:  # use the copy on disk rather than retrying the hub for a minute
                return ModelSource("cache", cached, local_files_only=True)
        return ModelSource("cache", cached)
    if hub_offline():
        raise TextGenerationError(
            f"text model {model_id!r} is neither a folder here nor in the local Hugging Face cache, and the hub is switched off "
            f"(offline mode: HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1), so it cannot be downloaded; "
            f"download it once with the network on, or {_ALTERNATIVES}"
        )
    if probe:
        up, what = hub_reachable()
        if not up:
            raise TextGenerationError(
                f"text model {model_id!r} is neither a folder here nor in the local Hugging Face cache, and the hub cannot be reached "
                f"({what} did not answer within {HUB_PROBE_TIMEOUT:g} s: offline?), so it cannot be downloaded; "
                f"download it once with the network on, or {_ALTERNATIVES}"
            )
    return ModelSource("download", f"{_hub_endpoint().rstrip('/')}/{model_id}")


def _resolve_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str | None, device: str) -> str:
    if dtype:
        if dtype == "auto":
            return "auto"
        name = _DTYPES.get(dtype.lower().removeprefix("torch."))
        if name is None:
            raise TextGenerationError(
                f"unknown dtype {dtype!r} for the transformers text backend; "
                "use float16, bfloat16, float32 or auto"
            )
        return name
    return "float16" if device.startswith("cuda") else "float32"


def _load(
    model_id: str, device: str, dtype: str, local_files_only: bool | None
) -> _Loaded:
    key = (model_id, device, dtype)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is not None:
            return loaded
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise TextGenerationError(
                f"the transformers text backend needs the transformers package "
                f"(pip install 'vchar[transformers]'): {exc}; or {_ALTERNATIVES}"
            ) from exc

        kwargs: dict[str, Any] = {}
        if local_files_only is not None:
            kwargs["local_files_only"] = local_files_only
        if not local_files_only:
            source = locate_model(model_id)  # fails at once instead of retrying an unreachable hub
            if source.local_files_only:
                kwargs["local_files_only"] = True
            if source.kind == "download":
                log.info("downloading text model %s from %s (once; it is cached after)", model_id, source.detail)
        stage = "tokenizer"
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id, **kwargs)
            stage = "model"
            torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
            model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch_dtype, **kwargs)
            stage = f"model onto {device}"
            model.to(device)
            model.eval()
        except Exception as exc:  # noqa: BLE001 - hub, file, config and device errors alike
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TextGenerationError(
                f"could not load the {stage} for text model {model_id!r} "
                f"({type(exc).__name__}{': ' + detail if detail else ''}); {_ALTERNATIVES}"
            ) from exc
        log.info("loaded text model %s on %s (%s)", model_id, device, dtype)
        loaded = _Loaded(tokenizer=tokenizer, model=model, device=device, dtype=dtype)
        _CACHE[key] = loaded
        return loaded


def clear_model_cache() -> None:
    """Forget every loaded model (tests, or to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


class _StopFlag:
    """A stopping criterion the consumer can trip from another thread."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def _make_streamer(tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> Any:
    from transformers import TextStreamer

    class _AsyncQueueStreamer(TextStreamer):
        """TextStreamer that hands finished text to an asyncio queue (thread-safe)."""

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                _put(text)

    def _put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, item)

    return _AsyncQueueStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True), _put


_END = object()


class TransformersTextGenerator:
    """A local causal LM, e.g. ``Qwen/Qwen2.5-1.5B-Instruct`` or a folder holding one."""

    name = "transformers"

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        if not model:
            raise TextGenerationError(f"the transformers text backend needs a model; {_ALTERNATIVES}")
        self.model = model
        self._device = device
        self._dtype = dtype
        self.local_files_only = local_files_only
        self._loaded: _Loaded | None = None
        self._load_error: TextGenerationError | None = None

    def __repr__(self) -> str:
        return f"TransformersTextGenerator(model={self.model!r})"

    # -- loading -------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _load_sync(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        if self._load_error is not None:
            raise self._load_error
        try:
            device = _resolve_device(self._device)
            dtype = _resolve_dtype(self._dtype, device)
            self._loaded = _load(self.model, device, dtype, self.local_files_only)
        except TextGenerationError as exc:
            self._load_error = exc
            raise
        return self._loaded

    def preflight(self) -> ModelSource:
        """Check, in a second or two and without loading anything, that the model can load:
        a folder, a hub id in the local cache, or a hub id the hub can serve. Raises
        :class:`TextGenerationError` with what to set instead."""
        if self._loaded is not None:
            return ModelSource("loaded", self.model)
        if self._load_error is not None:
            raise self._load_error
        if self.local_files_only:
            return ModelSource("folder", self.model, local_files_only=True)
        try:
            return locate_model(self.model)
        except TextGenerationError as exc:
            self._load_error = exc
            raise

    async def load(self) -> None:
        """Load the model now (in a worker thread) rather than on the first request."""
        if self._loaded is None:
            await asyncio.to_thread(self._load_sync)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, once loaded (``None`` before)."""
        return self._loaded.tokenizer if self._loaded else None

    # -- prompt --------------------------------------------------------------------

    def _inputs(self, loaded: _Loaded, request: TextRequest) -> dict[str, Any]:
        tok = loaded.tokenizer
        if not getattr(tok, "chat_template", None):
            raise TextGenerationError(
                f"text model {self.model!r} has no chat template in its tokenizer, so a chat "
                "prompt cannot be built; use an instruction-tuned (chat) model, or "
                + _ALTERNATIVES
            )
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        try:
            enc = self._apply_template(tok, messages)
        except Exception as exc:  # noqa: BLE001
            # Some templates (Gemma, Mistral v1) reject a system turn: fold it into the first user turn.
            folded = _fold_system(messages)
            if folded == messages:
                raise TextGenerationError(
                    f"the chat template of text model {self.model!r} failed: {exc}"
                ) from exc
            try:
                enc = self._apply_template(tok, folded)
            except Exception as exc2:  # noqa: BLE001
                raise TextGenerationError(
                    f"the chat template of text model {self.model!r} failed: {exc2}"
                ) from exc2
        return {k: v.to(loaded.device) for k, v in enc.items()}

    @staticmethod
    def _apply_template(tok: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
        import torch

        enc = tok.apply_chat_template(
            messages,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        # transformers 5 gives a BatchEncoding; older releases may give bare ids.
        if hasattr(enc, "keys") and "input_ids" in enc:
            out = {"input_ids": enc["input_ids"]}
            if enc.get("attention_mask") is not None:
                out["attention_mask"] = enc["attention_mask"]
        else:
            ids = enc if isinstance(enc, torch.Tensor) else torch.tensor(enc)
            if ids.dim() == 1:
                ids = ids.unsqueeze(0)
            out = {"input_ids": ids}
        if "attention_mask" not in out:
            out["attention_mask"] = torch.ones_like(out["input_ids"])
        return out

    def _generation_kwargs(self, loaded: _Loaded, request: TextRequest) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": max(1, int(request.max_tokens))}
        if request.temperature is None or request.temperature <= 0:
            kw["do_sample"] = False
            # Quiet the "temperature is set but do_sample is False" warnings of chat models.
            kw["temperature"] = None
            kw["top_p"] = None
            kw["top_k"] = None
        else:
            kw["do_sample"] = True
            kw["temperature"] = float(request.temperature)
            kw["top_p"] = float(request.top_p)
        tok, gen_config = loaded.tokenizer, getattr(loaded.model, "generation_config", None)
        eos: list[int] = []
        for source in (getattr(gen_config, "eos_token_id", None), tok.eos_token_id):
            for t in source if isinstance(source, (list, tuple)) else [source]:
                if t is not None and t not in eos:
                    eos.append(int(t))
        if eos:
            kw["eos_token_id"] = eos
        pad = tok.pad_token_id
        if pad is None and getattr(gen_config, "pad_token_id", None) is None and eos:
            pad = eos[0]
        if pad is not None:
            kw["pad_token_id"] = pad
        return kw

    # -- TextGenerator -------------------------------------------------------------

    async def stream(self, request: TextRequest) -> AsyncIterator[str]:
        loaded = self._loaded or await asyncio.to_thread(self._load_sync)
        inputs = self._inputs(loaded, request)
        gen_kwargs = self._generation_kwargs(loaded, request)

        from transformers import StoppingCriteriaList

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        streamer, put = _make_streamer(loaded.tokenizer, loop, queue)
        stop_flag = _StopFlag()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                import torch

                with loaded.lock, torch.inference_mode():
                    if stop_flag.event.is_set():
                        return
                    if request.seed is not None:
                        torch.manual_seed(request.seed)
                    loaded.model.generate(
                        **inputs,
                        **gen_kwargs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([stop_flag]),
                    )
            except BaseException as exc:  # noqa: BLE001 - reported to the consumer
                failure.append(exc)
            finally:
                put(_END)

        thread = threading.Thread(target=run, name=f"vchar-generate-{self.model}", daemon=True)
        thread.start()

        stops = [s for s in request.stop if s]
        pending = ""
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if not stops:
                    yield item
                    continue
                pending += item
                cut = _first_stop(pending, stops)
                if cut is not None:
                    if pending[:cut]:
                        yield pending[:cut]
                    pending = ""
                    stop_flag.event.set()
                    return
                keep = _held_back(pending, stops)
                if len(pending) > keep:
                    yield pending[: len(pending) - keep]
                    pending = pending[len(pending) - keep :]
            if pending:
                yield pending
            if failure:
                exc = failure[0]
                if isinstance(exc, TextGenerationError):
                    raise exc
                raise TextGenerationError(
                    f"text model {self.model!r} failed while generating: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        finally:
            # Stop the worker when the consumer stops early (stop string, cancel, aclose).
            stop_flag.event.set()

    async def generate(self, request: TextRequest) -> str:
        return "".join([piece async for piece in self.stream(request)])

    def count_tokens(self, text: str) -> int:
        if self._loaded is None:
            return estimate_tokens(text)
        if not text:
            return 0
        return len(self._loaded.tokenizer.encode(text, add_special_tokens=False))

    async def aclose(self) -> None:
        # The weights stay in the process-wide cache for other generators.
        self._loaded = None


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return messages
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could begin a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
