"""The xtts voice: coqui-tts XTTS v2 cloning from the sample.

* Weights come through coqui's ``ModelManager`` (downloaded on first use, with a progress bar)
  or from a local checkpoint folder (``config.json``, ``model.pth``, ``vocab.json``).
* The XTTS v2 weights are under the Coqui Public Model License (CPML, non-commercial). They are
  fetched or loaded only when the operator accepted it explicitly
  (``VCHAR_XTTS_ACCEPT_LICENSE=1`` or ``accept_license=True``); only then is coqui's own
  ``COQUI_TOS_AGREED`` set, so coqui never asks on stdin and never agrees silently.
* The conditioning latents (GPT style latents and speaker embedding) are computed once per
  voice and cached in a file keyed by the sample's sha256 (``latents_path``); a reply never
  re-encodes the sample.
* One model per process (per checkpoint and device), on CUDA when present.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from generators.voice.base import (
    AudioChunk,
    VoiceBackend,
    VoiceBackendError,
    VoiceError,
    VoiceProfile,
    split_sentences,
    style_params,
)
from generators.voice.finishing import resample

log = logging.getLogger(__name__)

DEFAULT_MODEL = "tts_models/multilingual/multi-dataset/xtts_v2"
CPML_URL = "https://coqui.ai/cpml"
LICENSE_HELP = (
    "XTTS v2's weights are under the Coqui Public Model License (non-commercial use only, "
    f"{CPML_URL}). Accept it explicitly with VCHAR_XTTS_ACCEPT_LICENSE=1 (or XttsVoice(accept_license=True)); "
    "for commercial use you need a licence from Coqui's successors. Or use VCHAR_VOICE_BACKEND=lite."
)
COND_SR = 22050
LATENTS_VERSION = 1

_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()
_PATCHED = False


def _patch_transformers_cache_name() -> None:
    """coqui-tts 0.28's GPT2InferenceModel.forward takes ``past_key_values``; transformers 5.2x
    generation passes the KV cache as ``cache``. Hand it over under the old name."""
    global _PATCHED
    if _PATCHED:
        return
    from TTS.tts.layers.xtts import gpt_inference

    cls = gpt_inference.GPT2InferenceModel
    original = cls.forward
    if getattr(original, "_vchar_cache_compat", False):
        _PATCHED = True
        return

    def forward(self, input_ids=None, past_key_values=None, *args, cache=None, **kwargs):
        if past_key_values is None and cache is not None:
            past_key_values = cache
        return original(self, input_ids, past_key_values, *args, **kwargs)

    forward._vchar_cache_compat = True  # type: ignore[attr-defined]
    cls.forward = forward
    _PATCHED = True


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


class XttsVoice(VoiceBackend):
    """Voice cloning with XTTS v2. Construction is cheap; the model loads on first use."""

    name = "xtts"
    sample_rate = 24000

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        accept_license: bool = False,
        model_name: str = DEFAULT_MODEL,
        model_dir: str | Path | None = None,
        device: str | None = None,
        stream_chunk_size: int = 20,
    ):
        try:
            import TTS  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            raise VoiceBackendError(f"the xtts voice needs coqui-tts: pip install 'vchar[voice]' ({exc})") from exc
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.accept_license = accept_license
        self.model_name = model_name
        self.model_dir = Path(model_dir).expanduser() if model_dir else None
        self.device = device or default_device()
        self.stream_chunk_size = stream_chunk_size
        self._folder: Path | None = None
        self._latents: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self.stats = {"latents_computed": 0, "latents_from_file": 0, "latents_from_memory": 0}

    # -- model ----------------------------------------------------------------------------------
    def _checkpoint_dir(self) -> Path:
        if self.model_dir is not None:
            if not (self.model_dir / "config.json").is_file():
                raise VoiceBackendError(f"no XTTS checkpoint in {self.model_dir}: config.json, model.pth and vocab.json expected")
            return self.model_dir
        if not self.accept_license:
            raise VoiceBackendError(LICENSE_HELP)
        # the operator accepted the CPML in our configuration: tell coqui, so it does not ask on stdin
        os.environ["COQUI_TOS_AGREED"] = "1"
        from TTS.utils.manage import ModelManager

        log.info("fetching %s through coqui's model manager (downloaded once, then cached)", self.model_name)
        try:
            model_path, config_path, _ = ModelManager(progress_bar=True).download_model(self.model_name)
        except Exception as exc:
            raise VoiceBackendError(f"could not fetch {self.model_name}: {exc}") from exc
        folder = Path(model_path)
        return folder if folder.is_dir() else Path(config_path).parent

    @property
    def model(self):
        """The loaded Xtts model, shared by every backend of this process on the same device."""
        if self._folder is None:
            self._folder = self._checkpoint_dir()
        key = (str(self._folder.resolve()), self.device)
        with _MODELS_LOCK:
            if key not in _MODELS:
                _MODELS[key] = self._load(self._folder)
            return _MODELS[key]

    def _load(self, folder: Path):
        _patch_transformers_cache_name()
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        t0 = time.perf_counter()
        config = XttsConfig()
        config.load_json(str(folder / "config.json"))
        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True)
        model.to(self.device)
        model._vchar_fingerprint = _file_fingerprint(folder / "model.pth")  # type: ignore[attr-defined]
        log.info("XTTS loaded from %s on %s in %.1f s", folder, self.device, time.perf_counter() - t0)
        return model

    # -- latents --------------------------------------------------------------------------------
    def latents_path(self, profile: VoiceProfile) -> Path | None:
        """Where this voice's conditioning latents are cached: one file per sample sha256 (and checkpoint)."""
        if self.cache_dir is None:
            return None
        model = self.model
        return self.cache_dir / "xtts" / f"{profile.sample_sha256}-{model._vchar_fingerprint}-v{LATENTS_VERSION}.pt"

    def prepare(self, profile: VoiceProfile) -> None:
        self.latents(profile)

    def latents(self, profile: VoiceProfile):
        """(gpt_cond_latent, speaker_embedding) for the voice: memory, then file, then computed once."""
        import torch

        sha = profile.sample_sha256
        with self._lock:
            if sha in self._latents:
                self.stats["latents_from_memory"] += 1
                return self._latents[sha]
            path = self.latents_path(profile)
            if path is not None and path.is_file():
                try:
                    d = torch.load(path, map_location="cpu", weights_only=True)
                    pair = (d["gpt_cond_latent"], d["speaker_embedding"])
                    self.stats["latents_from_file"] += 1
                    self._latents[sha] = pair
                    return pair
                except Exception as exc:
                    log.warning("XTTS latents cache %s unreadable (%s); recomputing", path, exc)
            pair = self._compute_latents(profile)
            self.stats["latents_computed"] += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save({"gpt_cond_latent": pair[0], "speaker_embedding": pair[1], "sample_sha256": sha}, tmp)
                os.replace(tmp, path)
            self._latents[sha] = pair
            return pair

    def _compute_latents(self, profile: VoiceProfile):
        """Coqui's get_conditioning_latents, fed from soundfile/PyAV instead of torchaudio's loader."""
        import torch

        from generators.voice.profile import load_audio

        model = self.model
        cfg = model.config
        x, sr = load_audio(profile.sample_path)
        x = resample(x, sr, COND_SR)
        audio = torch.from_numpy(np.clip(x, -1, 1)).unsqueeze(0)[:, : COND_SR * int(cfg.max_ref_len)].to(model.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            speaker_embedding = model.get_speaker_embedding(audio, COND_SR)
            gpt_cond_latent = model.get_gpt_cond_latents(
                audio, COND_SR, length=int(cfg.gpt_cond_len), chunk_length=int(cfg.gpt_cond_chunk_len)
            )
        log.info("XTTS conditioning latents for %s computed in %.2f s", profile.persona_id, time.perf_counter() - t0)
        return gpt_cond_latent.detach().cpu(), speaker_embedding.detach().cpu()

    # -- synthesis ------------------------------------------------------------------------------
    def _language(self, language: str) -> str:
        lang = (language or "en").lower()
        langs = list(self.model.config.languages)
        for cand in (lang, lang.split("-")[0], "zh-cn" if lang.startswith("zh") else None):
            if cand and cand in langs:
                return cand
        raise VoiceError(f"XTTS does not speak {language!r}; it knows {', '.join(langs)}")

    def _settings(self, style: str | None) -> dict:
        cfg = self.model.config
        st = style_params(style)
        return dict(
            temperature=st.temperature or cfg.temperature,
            length_penalty=cfg.length_penalty,
            repetition_penalty=cfg.repetition_penalty,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            speed=st.rate,
        )

    def _sentences(self, text: str, lang: str) -> list[str]:
        limit = self.model.tokenizer.char_limits.get(lang.split("-")[0], 250)
        out = split_sentences(text, max_chars=limit - 10)
        if not out:
            raise VoiceError("nothing to say: the text is empty")
        return out

    def synthesize(self, text: str, profile: VoiceProfile | None, *, language: str = "en", style: str | None = None) -> np.ndarray:
        if profile is None:
            raise VoiceError("the xtts voice clones a sample: give the persona a voice first (vchar voice set)")
        import torch

        model = self.model
        lang = self._language(language)
        gpt, spk = self.latents(profile)
        kw = self._settings(style)
        gap = np.zeros(int(0.15 * self.sample_rate), np.float32)
        parts: list[np.ndarray] = []
        with torch.inference_mode():
            for i, sent in enumerate(self._sentences(text, lang)):
                out = model.inference(sent, lang, gpt, spk, enable_text_splitting=False, **kw)
                if i:
                    parts.append(gap)
                parts.append(np.asarray(out["wav"], dtype=np.float32).reshape(-1))
        return np.concatenate(parts)

    def stream(self, text: str, profile: VoiceProfile | None, *, language: str = "en", style: str | None = None) -> Iterator[AudioChunk]:
        """XTTS's own streaming inference, sentence by sentence: the first audio comes after
        ``stream_chunk_size`` GPT tokens rather than after the whole sentence."""
        if profile is None:
            raise VoiceError("the xtts voice clones a sample: give the persona a voice first (vchar voice set)")
        model = self.model
        lang = self._language(language)
        gpt, spk = self.latents(profile)
        kw = self._settings(style)
        for i, sent in enumerate(self._sentences(text, lang)):
            # coqui's inference_stream is itself an inference-mode generator
            pending = None
            for chunk in model.inference_stream(
                sent, lang, gpt, spk, stream_chunk_size=self.stream_chunk_size, enable_text_splitting=False, **kw
            ):
                if pending is not None:
                    yield AudioChunk(pending, self.sample_rate, sent, i, final=False)
                pending = chunk.detach().float().cpu().numpy().reshape(-1)
            if pending is not None:
                yield AudioChunk(pending, self.sample_rate, sent, i, final=True)

    def describe(self) -> dict:
        return {"backend": self.name, "model": str(self.model_dir or self.model_name), "device": self.device}
