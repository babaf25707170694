"""Test helpers shipped with the package: XTTS checkpoints of the real architecture with random
weights (tiny for tests, full size for speed benchmarks), saved where coqui's loader reads them."""

from __future__ import annotations

from pathlib import Path

TEXTS = [
    "hello there, how are you today?",
    "the quick brown fox jumps over the lazy dog.",
    "a voice note for you, my friend! see you soon.",
    "what a lovely morning; the sun is shining and the birds sing.",
    "i can't wait to tell you everything about my trip.",
]
SPECIAL_TOKENS = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[de]", "[fr]", "[es]", "[it]"]


def train_vocab(path: Path, vocab_size: int = 160) -> Path:
    """A BPE vocabulary in XTTS's format (coqui's VoiceBpeTokenizer reads it), trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(TEXTS * 20, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def xtts_config(vocab: Path, *, full_size: bool = False, max_audio_tokens: int = 40):
    """An XttsConfig: tiny (2 GPT layers of width 64) or XTTS v2's real shapes (30 x 1024)."""
    from TTS.tts.configs.xtts_config import XttsConfig

    cfg = XttsConfig()
    a = cfg.model_args
    if full_size:
        a.gpt_layers, a.gpt_n_model_channels, a.gpt_n_heads = 30, 1024, 16
        a.decoder_input_dim = 1024
    else:
        a.gpt_layers, a.gpt_n_model_channels, a.gpt_n_heads = 2, 64, 2
        a.decoder_input_dim = 64
    # XTTS v2's token layout and conditioning (perceiver resampler)
    a.gpt_num_audio_tokens, a.gpt_start_audio_token, a.gpt_stop_audio_token = 1026, 1024, 1025
    a.gpt_use_perceiver_resampler = True
    a.gpt_max_audio_tokens = max_audio_tokens
    a.gpt_max_text_tokens = 402
    a.gpt_max_prompt_tokens = 70
    a.tokenizer_file = str(vocab)
    cfg.languages = ["en", "de", "fr", "es", "it"]
    cfg.gpt_cond_len, cfg.gpt_cond_chunk_len, cfg.max_ref_len = 12, 4, 10
    return cfg


def build_xtts(folder: str | Path, *, full_size: bool = False, max_audio_tokens: int = 40, seed: int = 0, save: bool = True):
    """Build an XTTS model with random weights; with ``save``, write ``config.json``,
    ``model.pth`` and ``vocab.json`` to ``folder`` as a real checkpoint folder. Returns (folder, model)."""
    import torch
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = train_vocab(folder / "vocab.json")
    cfg = xtts_config(vocab, full_size=full_size, max_audio_tokens=max_audio_tokens)
    torch.manual_seed(seed)
    model = Xtts(cfg)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(vocab))
    model.init_models()
    if save:
        cfg.save_json(str(folder / "config.json"))
        torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, folder / "model.pth")
    return folder, model
