"""The neural music tier: MusicGen (transformers) plays the backing.

``VCHAR_MUSIC_BACKEND=musicgen``. The song is planned as in the lite tier (lyrics,
form, key, tempo, the vocal melody); MusicGen then plays the backing from a text prompt
made of the style, key and tempo, and a MusicGen-Melody checkpoint
(``facebook/musicgen-melody``) is also conditioned on the composer's own melody and
chords, so the backing follows the tune the character sings. The character's voice sings
that tune with the lite singer (the lite vocal over the neural backing), so a song still
never uses a voice without consent.

Weights: ``facebook/musicgen-small`` by default, downloaded on first use with a progress
bar. Meta's MusicGen weights are licensed CC-BY-NC-4.0 (non-commercial use only):
``VCHAR_MUSIC_ACCEPT_LICENSE=1`` accepts that; nothing is downloaded before. A local
folder (``VCHAR_MUSIC_MODEL=/path``) is loaded as it is. fp16 on CUDA, float32 on the
CPU; loaded once per process. A model that cannot load is logged with the setting to
change, and the song is made by the lite tier instead (and says so).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from generators.music import MusicError, MusicRequest
from generators.music.lite import LiteMusic

log = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/musicgen-small"
LICENSE = "CC-BY-NC-4.0"
LICENSE_HELP = (
    f"MusicGen's weights are licensed {LICENSE} (non-commercial use only; "
    "https://creativecommons.org/licenses/by-nc/4.0/). Accept it with VCHAR_MUSIC_ACCEPT_LICENSE=1, or set "
    "VCHAR_MUSIC_BACKEND=lite; nothing is downloaded before"
)
MAX_SECONDS = 30.0  # what MusicGen was trained to make in one call


def _fit(y: np.ndarray, sr: int, length: float) -> np.ndarray:
    """A model's audio as the mix takes it: 44.1 kHz mono float32, exactly ``length`` long."""
    from generators.voice.finishing import resample

    y = resample(np.asarray(y, np.float64), sr, 44100).astype(np.float32)
    out = np.zeros(int(round(length * 44100)), np.float32)
    out[: min(len(out), len(y))] = y[: len(out)]
    return out


def _load_or_say(backend, notes: list[str]):
    """The backend's model, or None after logging why it cannot load (with the setting to
    change) and noting for the person that this song is the lite version."""
    try:
        return backend.load()
    except MusicError as exc:
        log.error("%s; this song is made by the lite tier", exc)
        notes.append(f"my studio's {backend.model_name} could not be used, so this is the simple version")
        return None


class _Batch:
    """Concurrent ``generate`` calls (songs made in several worker threads at once) run as
    one batch: the first caller waits ``window`` seconds for others, then generates for all.
    MusicGen's decoder is launch-bound on a GPU, so a batch of 8 costs little more than one."""

    def __init__(self, run, size: int, window: float = 0.05):
        self.run, self.size, self.window = run, size, window
        self._cv = threading.Condition()
        self._waiting: list[dict] = []
        self._leader = False

    def __call__(self, item: dict):
        item["done"] = threading.Event()
        with self._cv:
            self._waiting.append(item)
            self._cv.notify_all()
            lead = not self._leader
            if lead:
                self._leader = True
        while lead:  # the leader runs batches until nobody is left waiting
            deadline = time.monotonic() + self.window
            with self._cv:
                while len(self._waiting) < self.size and time.monotonic() < deadline:
                    self._cv.wait(max(0.0, deadline - time.monotonic()))
                batch, self._waiting = self._waiting[: self.size], self._waiting[self.size:]
            try:
                for it, out in zip(batch, self.run(batch)):
                    it["result"] = out
            except BaseException as exc:  # noqa: BLE001 - every caller of the batch sees it
                for it in batch:
                    it["error"] = exc
            finally:
                for it in batch:
                    it["done"].set()
            with self._cv:
                if not self._waiting:
                    self._leader = lead = False
        item["done"].wait()
        if "error" in item:
            raise item["error"]
        return item["result"]


class MusicGenMusic(LiteMusic):
    name = "musicgen"
    max_duration = MAX_SECONDS

    def __init__(self, out_dir: str | Path = "media/music", *, model: str | None = None, accept_license: bool = False,
                 device: str | None = None, voice=None, soundfont=None, guidance: float = 3.0,
                 static_cache: bool = True, compile: bool = False, batch: int = 1):
        super().__init__(out_dir, voice=voice, soundfont=soundfont)
        self.model_name = model or DEFAULT_MODEL
        # a preallocated KV cache (no reallocation per step; what torch.compile and CUDA graphs need)
        self.static_cache = static_cache
        self.compile = compile  # torch.compile the decoder step ("reduce-overhead": CUDA graphs) on CUDA
        # songs made at the same time share one generate call (a seed then no longer fixes the song)
        self.batch = _Batch(self._generate_batch, batch) if batch > 1 else None
        self.accept_license = accept_license
        self.device = device
        self.guidance = guidance
        self._model = self._processor = None
        self.melody = False  # a MusicGen-Melody checkpoint (known once loaded)
        self._lock = threading.Lock()
        self.description = f"musicgen: {self.model_name} backing, the lite singer"

    @property
    def is_local(self) -> bool:
        return Path(self.model_name).expanduser().is_dir()

    def load(self):
        """The model and its processor, loaded once (thread-safe)."""
        with self._lock:
            if self._model is not None:
                return self._model, self._processor
            if not self.is_local and not self.accept_license:
                raise MusicError(LICENSE_HELP)
            try:
                import torch
                from transformers import (AutoConfig, AutoProcessor, MusicgenForConditionalGeneration,
                                          MusicgenMelodyForConditionalGeneration)
            except ImportError as exc:
                raise MusicError(f"the musicgen backend needs transformers and torch: pip install -e '.[music]' "
                                 f"({exc})") from exc
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            src = str(Path(self.model_name).expanduser()) if self.is_local else self.model_name
            try:
                cfg = AutoConfig.from_pretrained(src)
                cls = (MusicgenMelodyForConditionalGeneration if cfg.model_type == "musicgen_melody"
                       else MusicgenForConditionalGeneration)
                log.info("loading %s (%s) on %s", self.model_name, cfg.model_type, device)
                model = cls.from_pretrained(src, dtype=dtype).to(device).eval()
                processor = AutoProcessor.from_pretrained(src)
            except Exception as exc:  # noqa: BLE001 - named with the setting to change
                raise MusicError(f"could not load the music model {self.model_name!r} (VCHAR_MUSIC_MODEL): "
                                 f"{type(exc).__name__}: {exc}") from exc
            if self.compile and device.startswith("cuda"):
                model.decoder.forward = torch.compile(model.decoder.forward, mode="reduce-overhead")
            self._model, self._processor, self._device = model, processor, device
            self.melody = cfg.model_type == "musicgen_melody"
            return model, processor

    def _generate_batch(self, items: list[dict]) -> list[np.ndarray]:
        import torch

        model, processor = self.load()
        inputs = processor(text=[it["prompt"] for it in items], padding=True, return_tensors="pt").to(self._device)
        torch.manual_seed(items[0]["seed"])
        with torch.inference_mode():
            audio = model.generate(**inputs, do_sample=True, guidance_scale=self.guidance,
                                   max_new_tokens=max(it["tokens"] for it in items),
                                   cache_implementation="static" if self.static_cache else None)
        log.info("musicgen: %d songs' backings in one batch", len(items))
        return [a.float().mean(dim=0).cpu().numpy() for a in audio]

    def backing(self, score, length: float, req: MusicRequest, notes: list[str], say) -> tuple[dict, str]:
        loaded = _load_or_say(self, notes)
        if loaded is None:
            return LiteMusic.backing(self, score, length, req, notes, say)
        model, processor = loaded
        import torch
        from transformers.generation.streamers import BaseStreamer

        from generators.voice.finishing import resample

        style, key = score.style, score.key
        prompt = (f"{style.name} song, {style.description}, {key.name}, {score.tempo:.0f} bpm, "
                  f"instrumental backing for a singer" + (f", about {req.topic}" if req.topic else ""))
        sr = int(model.config.audio_encoder.sampling_rate)
        frame_rate = float(model.config.audio_encoder.frame_rate)
        seconds = min(length, MAX_SECONDS)
        tokens = int(np.ceil(seconds * frame_rate)) + int(model.decoder.num_codebooks)
        kwargs = {"text": [prompt], "padding": True, "return_tensors": "pt"}
        if self.melody:  # the composer's melody and chords, so the backing follows the tune
            played, _ = super().backing(score, length, req, [], lambda f, s: None)
            guide = sum(played[k] for k in ("lead", "chords") if k in played)
            if not isinstance(guide, int):
                kwargs.update(audio=resample(guide, 44100, sr).astype(np.float32), sampling_rate=sr)
        inputs = processor(**kwargs).to(self._device)
        if "input_features" in inputs and model.dtype == torch.float16:
            inputs["input_features"] = inputs["input_features"].half()

        class Steps(BaseStreamer):
            def __init__(self):
                self.n, self.shown = 0, 0.0

            def put(self, value):
                self.n += 1
                share = min(1.0, self.n / tokens)
                if share - self.shown >= 0.05:
                    self.shown = share
                    say(0.15 + 0.45 * share, "playing")

            def end(self):
                pass

        if self.batch is not None and not self.melody:
            say(0.2, "playing")
            y = self.batch({"prompt": prompt, "tokens": tokens, "seed": req.seed})
        else:
            torch.manual_seed(req.seed)
            with torch.inference_mode():
                audio = model.generate(**inputs, do_sample=True, guidance_scale=self.guidance, max_new_tokens=tokens,
                                       streamer=Steps(),
                                       # MusicGen-Melody's generate cannot take a static cache in transformers 5.24
                                       cache_implementation="static" if self.static_cache and not self.melody else None)
            y = audio[0].float().mean(dim=0).cpu().numpy()
        return {"backing": _fit(y, sr, length)}, f"musicgen:{Path(self.model_name).name}"


SA_DEFAULT = "stabilityai/stable-audio-open-1.0"
SA_LICENSE_HELP = (
    "Stable Audio's weights are under the Stability AI Community License (free below USD 1M annual revenue; "
    "https://stability.ai/license). Accept it with VCHAR_MUSIC_ACCEPT_LICENSE=1, or set VCHAR_MUSIC_BACKEND=lite; "
    "nothing is downloaded before"
)


class StableAudioMusic(LiteMusic):
    """Stable Audio (Open 1.0, or 3) through diffusers plays the backing from the prompt;
    the character's lite vocal sings the composer's tune over it. The pipeline class comes
    from the checkpoint's own ``model_index.json``."""

    name = "stable-audio"
    max_duration = 47.0  # Stable Audio Open's longest

    def __init__(self, out_dir: str | Path = "media/music", *, model: str | None = None, accept_license: bool = False,
                 device: str | None = None, voice=None, soundfont=None, steps: int = 100, guidance: float = 7.0):
        super().__init__(out_dir, voice=voice, soundfont=soundfont)
        self.model_name = model or SA_DEFAULT
        self.accept_license = accept_license
        self.device = device
        self.steps, self.guidance = steps, guidance
        self._pipe = None
        self._lock = threading.Lock()
        self.description = f"stable-audio: {self.model_name} backing, the lite singer"

    def load(self):
        with self._lock:
            if self._pipe is not None:
                return self._pipe
            local = Path(self.model_name).expanduser().is_dir()
            if not local and not self.accept_license:
                raise MusicError(SA_LICENSE_HELP)
            try:
                import torch
                from diffusers import DiffusionPipeline
            except ImportError as exc:
                raise MusicError(f"the stable-audio backend needs diffusers and torch: pip install -e '.[image]' "
                                 f"({exc})") from exc
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            src = str(Path(self.model_name).expanduser()) if local else self.model_name
            try:
                pipe = DiffusionPipeline.from_pretrained(src, dtype=dtype).to(device)
            except Exception as exc:  # noqa: BLE001
                raise MusicError(f"could not load the music model {self.model_name!r} (VCHAR_MUSIC_MODEL): "
                                 f"{type(exc).__name__}: {exc}") from exc
            pipe.set_progress_bar_config(disable=True)
            self._pipe, self._device = pipe, device
            return pipe

    def backing(self, score, length: float, req: MusicRequest, notes: list[str], say) -> tuple[dict, str]:
        loaded = _load_or_say(self, notes)
        if loaded is None:
            return LiteMusic.backing(self, score, length, req, notes, say)
        pipe = loaded
        import torch

        style, key = score.style, score.key
        prompt = f"{style.name}, {style.description}, {key.name}, {score.tempo:.0f} BPM, instrumental"
        sr = int(getattr(pipe.vae.config, "sampling_rate", 44100))
        hop = int(getattr(pipe.vae, "hop_length", 2048))
        sample_size = getattr(pipe.transformer.config, "sample_size", None)  # Stable Audio 3 has none
        longest = sample_size * hop / sr if sample_size else self.max_duration  # what one call can make
        seconds = min(length, self.max_duration, longest)
        steps = self.steps

        import inspect

        params = inspect.signature(pipe.__call__).parameters
        kwargs: dict = {"audio_end_in_s": seconds} if "audio_end_in_s" in params else {"duration": seconds}
        if "callback_on_step_end" in params:  # Stable Audio 3
            def on_step(pipe_, i, t, kw):
                say(0.15 + 0.45 * (i + 1) / steps, "playing")
                return kw

            kwargs["callback_on_step_end"] = on_step
        elif "callback" in params:  # Stable Audio Open
            kwargs["callback"] = lambda i, t, latents: say(0.15 + 0.45 * (i + 1) / steps, "playing")
        gen = torch.Generator(device="cpu").manual_seed(req.seed)
        with torch.inference_mode():
            out = pipe(prompt, num_inference_steps=steps, guidance_scale=self.guidance, generator=gen,
                       negative_prompt="low quality, vocals, singing", **kwargs)
        audio = out.audios[0]
        y = audio.float().mean(dim=0).cpu().numpy() if hasattr(audio, "float") else np.asarray(audio).mean(axis=0)
        return {"backing": _fit(y, sr, length)}, f"stable-audio:{Path(self.model_name).name}"


ACE_DEFAULT = "ACE-Step/acestep-v15-xl-turbo-diffusers"


class AceStepMusic(StableAudioMusic):
    """ACE-Step 1.5 through diffusers (MIT weights): a song model that takes the tempo and
    the key, so its backing is asked for at the composer's BPM and key, as an instrumental
    (``[Instrumental]``): the character's own voice sings the words over it with the lite
    singer. ACE-Step's own singing is never used, since it is nobody's consented voice."""

    name = "ace-step"
    max_duration = 120.0

    def __init__(self, out_dir: str | Path = "media/music", *, model: str | None = None, accept_license: bool = False,
                 device: str | None = None, voice=None, soundfont=None, steps: int = 8, guidance: float = 7.0):
        super().__init__(out_dir, model=model or ACE_DEFAULT, accept_license=True, device=device, voice=voice,
                         soundfont=soundfont, steps=steps, guidance=guidance)
        self.description = f"ace-step: {self.model_name} backing (MIT), the lite singer"

    def backing(self, score, length: float, req: MusicRequest, notes: list[str], say) -> tuple[dict, str]:
        loaded = _load_or_say(self, notes)
        if loaded is None:
            return LiteMusic.backing(self, score, length, req, notes, say)
        pipe = loaded
        import torch

        style, key = score.style, score.key
        steps = self.steps

        def on_step(pipe_, i, t, kw):
            say(0.15 + 0.45 * (i + 1) / steps, "playing")
            return kw

        gen = torch.Generator(device="cpu").manual_seed(req.seed)
        with torch.inference_mode():
            out = pipe(prompt=f"{style.name}, {style.description}, instrumental", lyrics="[Instrumental]",
                       audio_duration=float(min(length, self.max_duration)), bpm=int(round(score.tempo)),
                       keyscale=key.name, timesignature="4",
                       num_inference_steps=steps, guidance_scale=self.guidance, generator=gen,
                       callback_on_step_end=on_step)
        audio = out.audios[0]
        y = audio.float().mean(dim=0).cpu().numpy() if hasattr(audio, "float") else np.asarray(audio).mean(axis=0)
        sr = int(getattr(pipe.vae.config, "sampling_rate", 48000))
        return {"backing": _fit(y, sr, length)}, f"ace-step:{Path(self.model_name).name}"
