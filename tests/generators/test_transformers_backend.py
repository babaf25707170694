"""TransformersTextGenerator with a tiny random Llama and a tokenizer trained here.

Nothing is downloaded: the model and tokenizer are built in the test and saved
to a temporary folder that the backend loads like any local model.
"""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from generators.text.base import (  # noqa: E402
    ChatMessage,
    TextGenerationError,
    TextGenerator,
    TextRequest,
    estimate_tokens,
)
from generators.text.transformers_backend import TransformersTextGenerator  # noqa: E402

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]

CORPUS = [
    "Hello there! How are you doing today?",
    "I am a virtual character who loves to chat about books, music and the stars.",
    "The quick brown fox jumps over the lazy dog.",
    "What is your favourite colour? Mine is blue, like the evening sky.",
    "Ada Lovelace wrote the first program for the Analytical Engine.",
    "Tell me a story about a dragon who learned to bake bread.",
    "system user assistant: remember the name of the person you talk to.",
    "Good morning, good evening, good night, see you tomorrow.",
] * 20


def _build(folder, *, with_template: bool = True) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # No initial byte alphabet: every token is ASCII, so any token sequence decodes cleanly.
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token=None,
    )
    if with_template:
        fast.chat_template = CHATML
    fast.save_pretrained(folder)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; it may be imported already.
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    _build(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama-no-template")
    _build(folder, with_template=False)
    return folder


def _request(**kw) -> TextRequest:
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0.0)
    return TextRequest(
        messages=(
            ChatMessage("system", "You are Ada, a friendly character."),
            ChatMessage("user", "Hello there! Tell me a story about a dragon."),
        ),
        **kw,
    )


async def test_generate_returns_text(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    assert isinstance(gen, TextGenerator)
    assert gen.name == "transformers"
    out = await gen.generate(_request())
    assert isinstance(out, str)
    await gen.aclose()


async def test_greedy_output_matches_direct_generation_through_chat_template(tiny_model):
    """The backend's prompt is the chat template's, and max_tokens caps the new tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    request = _request(max_tokens=8)
    out = await gen.generate(request)

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou are Ada")
    assert prompt.endswith("<|im_start|>assistant\n")
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        ids = model.generate(
            **enc, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    new = ids[0, enc["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 8
    assert out == tok.decode(new, skip_special_tokens=True)


async def test_stream_join_equals_generate_under_greedy(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    whole = await gen.generate(_request(max_tokens=12))
    pieces = [p async for p in gen.stream(_request(max_tokens=12))]
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == whole


async def test_max_tokens_respected(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    one = await gen.generate(_request(max_tokens=1))
    four = await gen.generate(_request(max_tokens=4))
    assert gen.count_tokens(one) <= 1
    assert four.startswith(one)
    assert len(gen.tokenizer.encode(four, add_special_tokens=False)) <= 4


async def test_sampling_with_seed_is_reproducible(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    a = await gen.generate(_request(temperature=1.0, seed=123))
    b = await gen.generate(_request(temperature=1.0, seed=123))
    assert isinstance(a, str) and a == b


async def test_stop_strings_cut_the_text(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    full = await gen.generate(_request(max_tokens=12))
    if len(full) < 3:
        pytest.skip("the random model produced too little text to cut")
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = full[: full.find(stop)]
    assert await gen.generate(_request(max_tokens=12, stop=(stop,))) == expected
    pieces = [p async for p in gen.stream(_request(max_tokens=12, stop=(stop,)))]
    assert "".join(pieces) == expected


async def test_count_tokens_uses_real_tokenizer_once_loaded(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    text = "<|im_start|>user\nzzqx<|im_end|>"
    assert gen.count_tokens(text) == estimate_tokens(text)  # not loaded yet
    await gen.load()
    real = gen.count_tokens(text)
    assert real == len(gen.tokenizer.encode(text, add_special_tokens=False))
    assert real != estimate_tokens(text)
    assert gen.count_tokens("") == 0


async def test_model_loaded_once_per_process(tiny_model):
    a = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    b = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    await asyncio.gather(a.load(), b.load())
    assert a._loaded is b._loaded
    assert a._loaded.model is b._loaded.model
    assert a.tokenizer is b.tokenizer


async def test_concurrent_requests(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    outs = await asyncio.gather(*(gen.generate(_request(max_tokens=4)) for _ in range(3)))
    assert outs[0] == outs[1] == outs[2]


async def test_event_loop_stays_free_while_generating(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    await gen.load()
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    try:
        await gen.generate(_request(max_tokens=8))
    finally:
        t.cancel()
    assert ticks > 1


async def test_early_break_from_stream(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), device="cpu")
    agen = gen.stream(_request(max_tokens=64))
    async for _ in agen:
        break
    await agen.aclose()
    # the worker released the model: another request completes
    assert isinstance(await asyncio.wait_for(gen.generate(_request(max_tokens=2)), 30), str)


async def test_missing_model_raises_with_alternatives(tmp_path):
    gen = TransformersTextGenerator(model="vchar-tests/definitely-not-a-real-model-xyz")
    with pytest.raises(TextGenerationError) as info:
        await gen.generate(_request())
    msg = str(info.value)
    assert "definitely-not-a-real-model-xyz" in msg
    assert "VCHAR_TEXT_BACKEND=lite" in msg
    assert "VCHAR_TEXT_MODEL" in msg and "VCHAR_TEXT_BASE_URL" in msg
    # a folder that is not a model
    gen2 = TransformersTextGenerator(model=str(tmp_path))
    with pytest.raises(TextGenerationError, match="VCHAR_TEXT_BACKEND=lite"):
        await gen2.generate(_request())


async def test_tokenizer_without_chat_template(tiny_model_no_template):
    gen = TransformersTextGenerator(model=str(tiny_model_no_template), device="cpu")
    with pytest.raises(TextGenerationError, match="chat template"):
        await gen.generate(_request())
    with pytest.raises(TextGenerationError, match="chat template"):
        async for _ in gen.stream(_request()):
            pass


def test_bad_dtype_is_explained(tiny_model):
    gen = TransformersTextGenerator(model=str(tiny_model), dtype="float7")
    with pytest.raises(TextGenerationError, match="dtype"):
        asyncio.run(gen.generate(_request()))


# -- offline and unreachable hubs fail at once ------------------------------------------------


async def test_offline_mode_and_a_hub_id_not_in_the_cache_fails_at_once(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (set by the fixture) and an id that was never downloaded: a clear
    error within a second, naming the setting and the alternatives; the hub is not tried."""
    import time

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"), raising=False)
    gen = TransformersTextGenerator(model="vchar-tests/never-downloaded-model")
    start = time.monotonic()
    with pytest.raises(TextGenerationError) as info:
        await gen.generate(_request())
    assert time.monotonic() - start < 2
    msg = str(info.value)
    assert "never-downloaded-model" in msg and "offline" in msg and "HF_HUB_OFFLINE" in msg
    assert "VCHAR_TEXT_MODEL" in msg and "VCHAR_TEXT_BACKEND=lite" in msg and "VCHAR_TEXT_BACKEND=openai" in msg
    with pytest.raises(TextGenerationError, match="offline"):  # the preflight says the same, at once
        TransformersTextGenerator(model="vchar-tests/never-downloaded-model").preflight()


_LOAD_SCRIPT = """
import asyncio, sys, time
from generators.text.base import ChatMessage, TextRequest
from generators.text.transformers_backend import TransformersTextGenerator
gen = TransformersTextGenerator(model=sys.argv[1], device="cpu")
start = time.monotonic()
try:
    out = asyncio.run(gen.generate(TextRequest(messages=(ChatMessage("user", "Hello there!"),), max_tokens=2,
                                               temperature=0.0)))
    print("OK", repr(out))
except Exception as exc:
    print("ERROR", exc)
print("SECONDS", time.monotonic() - start)
"""


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_with_unreachable_hub(model: str, cache) -> tuple[str, float]:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_CACHE": str(cache),
           "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)
    proc = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, model], capture_output=True, text=True, env=env,
                          timeout=240)
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("SECONDS"), proc.stdout + proc.stderr
    return "\n".join(lines[:-1]), float(lines[-1].split()[1])


def test_unreachable_hub_and_a_hub_id_not_in_the_cache_fails_at_once(tmp_path):
    """No network (here: a hub address nobody listens on) instead of a minute of retries."""
    out, seconds = _load_with_unreachable_hub("vchar-tests/never-downloaded-model", tmp_path / "empty-cache")
    assert out.startswith("ERROR"), out
    assert "cannot be reached" in out and "VCHAR_TEXT_MODEL" in out and "VCHAR_TEXT_BACKEND=lite" in out
    assert seconds < 6, f"took {seconds:.1f} s"


def test_a_hub_id_in_the_local_cache_loads_while_the_hub_is_unreachable(tmp_path, tiny_model):
    """A model downloaded before still loads with the network gone, without hub retries."""
    import shutil

    cache = tmp_path / "hub-cache"
    repo = cache / "models--vchar-tests--tiny-llama"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    out, seconds = _load_with_unreachable_hub("vchar-tests/tiny-llama", cache)
    assert out.startswith("OK"), out
    assert seconds < 20, f"took {seconds:.1f} s"
