"""Map a CTranslate2 WhisperSpec onto Hugging Face's `WhisperForConditionalGeneration`.

CTranslate2 fuses projections that transformers keeps apart:
  * self-attention `linear_0` = [q; k; v] stacked on the output axis (k's bias slot is zero: Whisper's
    k_proj has no bias),
  * decoder cross-attention `linear_1` = [k; v] (queries are `linear_0`, output `linear_2`).
Everything else maps one to one. The output projection is tied to the token embedding (CTranslate2 stores
it as an alias), exactly as in Whisper.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import WhisperConfig

from exporter.models.ct2 import CT2Model
from runtimes.errors import EdgeAsrError

# Whisper's fixed context sizes (30 s of audio -> 1500 encoder frames, 448 text positions).
_MAX_SOURCE_POSITIONS = 1500
_MAX_TARGET_POSITIONS = 448


def _count_layers(ct2: CT2Model, stack: str) -> int:
    n = 0
    while f"{stack}/layer_{n}/ffn/linear_0/weight" in ct2:
        n += 1
    return n


def whisper_config(ct2: CT2Model, special: dict[str, int]) -> WhisperConfig:
    """Derive the architecture from tensor shapes; `special` gives the tokenizer's special ids."""
    if ct2.spec_name != "WhisperSpec":
        raise EdgeAsrError(f"expected a Whisper model, found a CTranslate2 {ct2.spec_name}")
    vocab, d_model = ct2["decoder/embeddings/weight"].shape
    n_mels = ct2["encoder/conv1/weight"].shape[1]
    ffn_dim = ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2["encoder/num_heads"]),
        decoder_attention_heads=int(ct2["decoder/num_heads"]),
        encoder_ffn_dim=int(ffn_dim),
        decoder_ffn_dim=int(ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=_MAX_SOURCE_POSITIONS,
        max_target_positions=_MAX_TARGET_POSITIONS,
        decoder_start_token_id=special["sot"],
        eos_token_id=special["eot"],
        bos_token_id=special["eot"],
        pad_token_id=special["eot"],
        tie_word_embeddings=True,
        scale_embedding=False,
        activation_function="gelu",
    )


def _split(array: np.ndarray, parts: int) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise EdgeAsrError(f"cannot split a fused projection of {array.shape[0]} rows into {parts}")
    return np.split(array, parts, axis=0)


def _linear(out: dict, prefix: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
    out[f"{prefix}.weight"] = weight
    if bias is not None:
        out[f"{prefix}.bias"] = bias


def _norm(out: dict, prefix: str, ct2: CT2Model, source: str) -> None:
    out[f"{prefix}.weight"] = ct2[f"{source}/gamma"]
    out[f"{prefix}.bias"] = ct2[f"{source}/beta"]


def _fused_qkv(out: dict, prefix: str, ct2: CT2Model, source: str) -> None:
    q_w, k_w, v_w = _split(ct2[f"{source}/weight"], 3)
    q_b, k_b, v_b = _split(ct2[f"{source}/bias"], 3)
    if np.any(k_b != 0):
        raise EdgeAsrError(f"{source}: non-zero key bias, which Whisper does not have")
    _linear(out, f"{prefix}.q_proj", q_w, q_b)
    _linear(out, f"{prefix}.k_proj", k_w, None)
    _linear(out, f"{prefix}.v_proj", v_w, v_b)


def _fused_kv(out: dict, prefix: str, ct2: CT2Model, source: str) -> None:
    k_w, v_w = _split(ct2[f"{source}/weight"], 2)
    k_b, v_b = _split(ct2[f"{source}/bias"], 2)
    if np.any(k_b != 0):
        raise EdgeAsrError(f"{source}: non-zero key bias, which Whisper does not have")
    _linear(out, f"{prefix}.k_proj", k_w, None)
    _linear(out, f"{prefix}.v_proj", v_w, v_b)


def _plain(out: dict, prefix: str, ct2: CT2Model, source: str) -> None:
    _linear(out, prefix, ct2[f"{source}/weight"], ct2[f"{source}/bias"])


def _encoder(out: dict, ct2: CT2Model, n_layers: int) -> None:
    enc = "model.encoder"
    _plain(out, f"{enc}.conv1", ct2, "encoder/conv1")
    _plain(out, f"{enc}.conv2", ct2, "encoder/conv2")
    out[f"{enc}.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        _fused_qkv(out, f"{dst}.self_attn", ct2, f"{src}/self_attention/linear_0")
        _plain(out, f"{dst}.self_attn.out_proj", ct2, f"{src}/self_attention/linear_1")
        _norm(out, f"{dst}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
        _plain(out, f"{dst}.fc1", ct2, f"{src}/ffn/linear_0")
        _plain(out, f"{dst}.fc2", ct2, f"{src}/ffn/linear_1")
        _norm(out, f"{dst}.final_layer_norm", ct2, f"{src}/ffn/layer_norm")
    _norm(out, f"{enc}.layer_norm", ct2, "encoder/layer_norm")


def _decoder(out: dict, ct2: CT2Model, n_layers: int) -> None:
    dec = "model.decoder"
    out[f"{dec}.embed_tokens.weight"] = ct2["decoder/embeddings/weight"]
    out[f"{dec}.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    for i in range(n_layers):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _fused_qkv(out, f"{dst}.self_attn", ct2, f"{src}/self_attention/linear_0")
        _plain(out, f"{dst}.self_attn.out_proj", ct2, f"{src}/self_attention/linear_1")
        _norm(out, f"{dst}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
        _plain(out, f"{dst}.encoder_attn.q_proj", ct2, f"{src}/attention/linear_0")
        _fused_kv(out, f"{dst}.encoder_attn", ct2, f"{src}/attention/linear_1")
        _plain(out, f"{dst}.encoder_attn.out_proj", ct2, f"{src}/attention/linear_2")
        _norm(out, f"{dst}.encoder_attn_layer_norm", ct2, f"{src}/attention/layer_norm")
        _plain(out, f"{dst}.fc1", ct2, f"{src}/ffn/linear_0")
        _plain(out, f"{dst}.fc2", ct2, f"{src}/ffn/linear_1")
        _norm(out, f"{dst}.final_layer_norm", ct2, f"{src}/ffn/layer_norm")
    _norm(out, f"{dec}.layer_norm", ct2, "decoder/layer_norm")
    if "decoder/projection/weight" in ct2 and not np.array_equal(
        ct2["decoder/projection/weight"], ct2["decoder/embeddings/weight"]
    ):
        raise EdgeAsrError("decoder projection is not tied to the token embedding; not a Whisper checkpoint")


def whisper_state_dict(ct2: CT2Model, config: WhisperConfig) -> dict[str, torch.Tensor]:
    """Hugging Face parameter names -> tensors (the dtype stored in the file, usually float16)."""
    arrays: dict[str, np.ndarray] = {}
    _encoder(arrays, ct2, config.encoder_layers)
    _decoder(arrays, ct2, config.decoder_layers)
    return {name: torch.from_numpy(np.array(a, copy=True)) for name, a in arrays.items()}
