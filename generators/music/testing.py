"""Test helpers shipped with the package: MusicGen checkpoints of the real architecture
(a T5 text encoder, the EnCodec audio codec, the MusicGen decoder) with random weights,
tiny, saved as ``from_pretrained`` reads a downloaded one, with a processor whose
tokenizer is trained here (no hub)."""

from __future__ import annotations

from pathlib import Path

PROMPTS = ["lo-fi beat with soft piano", "upbeat pop with drums and bass", "calm ambient pad", "80s synthwave"] * 10


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())  # T5's own tokenizer model, trained on a few prompts
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(PROMPTS, trainers.UnigramTrainer(vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=64)


def build_musicgen(path: Path, *, melody: bool = False, sampling_rate: int = 32000,
                   small_shaped: bool = False) -> Path:
    """A tiny MusicGen (or MusicGen-Melody) saved at ``path`` with its processor;
    ``small_shaped``: musicgen-small's real shapes (a T5-base encoder, EnCodec 32 kHz with
    2048-entry codebooks, a 24 x 1024 decoder), for speed measurements."""
    import torch
    from transformers import EncodecConfig, EncodecFeatureExtractor, MusicgenDecoderConfig, T5Config

    torch.manual_seed(0)
    tok = _tokenizer()
    n_q = 4  # 2.2 kb/s at 50 frames a second, as musicgen-small's EnCodec
    if small_shaped:
        text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
                        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
        audio = EncodecConfig(sampling_rate=sampling_rate, audio_channels=1, upsampling_ratios=[8, 5, 4, 4],
                              codebook_size=2048, target_bandwidths=[2.2], num_filters=64, hidden_size=128)
        decoder = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        ffn_dim=4096, num_codebooks=n_q, max_position_embeddings=2048,
                                        pad_token_id=2048, bos_token_id=2048, audio_channels=1)
        start = 2048
    else:
        text = T5Config(vocab_size=len(tok), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
        audio = EncodecConfig(sampling_rate=sampling_rate, audio_channels=1, hidden_size=8, num_filters=4,
                              num_residual_layers=1, upsampling_ratios=[8, 5, 4, 4], codebook_size=64, codebook_dim=8,
                              num_lstm_layers=1, target_bandwidths=[2.2])
        decoder = MusicgenDecoderConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                        ffn_dim=32, num_codebooks=n_q, max_position_embeddings=4096,
                                        pad_token_id=64, bos_token_id=64, audio_channels=1)
        start = 64
    if melody:
        from transformers import (MusicgenMelodyConfig, MusicgenMelodyFeatureExtractor,
                                  MusicgenMelodyForConditionalGeneration, MusicgenMelodyProcessor)
        from transformers import MusicgenMelodyDecoderConfig

        decoder = MusicgenMelodyDecoderConfig(**{k: v for k, v in decoder.to_dict().items()
                                                 if k in MusicgenMelodyDecoderConfig().to_dict()})
        cfg = MusicgenMelodyConfig(text_encoder=text, audio_encoder=audio, decoder=decoder, num_chroma=12)
        model = MusicgenMelodyForConditionalGeneration(cfg)
        processor = MusicgenMelodyProcessor(MusicgenMelodyFeatureExtractor(sampling_rate=sampling_rate), tok)
    else:
        from transformers import MusicgenConfig, MusicgenForConditionalGeneration, MusicgenProcessor

        cfg = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
        model = MusicgenForConditionalGeneration(cfg)
        processor = MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=sampling_rate), tok)
    model.generation_config.decoder_start_token_id = start
    model.generation_config.pad_token_id = start
    model.generation_config.do_sample = True
    model.generation_config.guidance_scale = 3.0
    model.generation_config.max_length = 256
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_stable_audio(path: Path) -> Path:
    """A tiny Stable Audio Open pipeline (Oobleck VAE, T5 encoder, the seconds projection,
    the DiT, its EDM DPM-Solver scheduler) saved as ``DiffusionPipeline.from_pretrained``
    reads a downloaded one; up to about 3 s of audio."""
    import torch
    from diffusers import AutoencoderOobleck, EDMDPMSolverMultistepScheduler, StableAudioDiTModel, StableAudioPipeline
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tok = _tokenizer()
    text = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                                   pad_token_id=0, eos_token_id=1))
    vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[4, 8, 8], channel_multiples=[1, 2, 2],
                             decoder_channels=6, decoder_input_channels=8, audio_channels=2, sampling_rate=44100)
    dit = StableAudioDiTModel(sample_size=512, in_channels=8, num_layers=2, attention_head_dim=8, num_attention_heads=2,
                              num_key_value_attention_heads=1, out_channels=8, cross_attention_dim=16, time_proj_dim=8,
                              global_states_input_dim=16, cross_attention_input_dim=8)
    proj = StableAudioProjectionModel(text_encoder_dim=16, conditioning_dim=8, min_value=0, max_value=64)
    sched = EDMDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                           sigma_schedule="exponential")
    StableAudioPipeline(vae=vae, text_encoder=text, projection_model=proj, tokenizer=tok, transformer=dit,
                        scheduler=sched).save_pretrained(path)
    return path


def build_ace_step(path: Path) -> Path:
    """A tiny ACE-Step 1.5 pipeline (Oobleck VAE, a Qwen3 text encoder with a byte-level
    BPE tokenizer trained here, the condition encoder, the DiT, flow-matching Euler)."""
    import torch
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    torch.manual_seed(0)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(PROMPTS + ["[verse] the rain tonight", "[Instrumental]"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<|endoftext|>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>",
                                        pad_token="<pad>", model_max_length=256)
    text = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512))
    a = 8  # the acoustic latent width (64 in the real model)
    vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[4, 8, 8], channel_multiples=[1, 2, 2],
                             decoder_channels=6, decoder_input_channels=a, audio_channels=2, sampling_rate=48000)
    dit = AceStepTransformer1DModel(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    num_key_value_heads=1, head_dim=8, in_channels=3 * a, audio_acoustic_hidden_dim=a,
                                    patch_size=2, sliding_window=16, encoder_hidden_size=16)
    cond = AceStepConditionEncoder(hidden_size=16, intermediate_size=32, text_hidden_dim=16, timbre_hidden_dim=a,
                                   num_lyric_encoder_hidden_layers=1, num_timbre_encoder_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=16)
    AceStepPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, transformer=dit, condition_encoder=cond,
                    scheduler=FlowMatchEulerDiscreteScheduler()).save_pretrained(path)
    return path
