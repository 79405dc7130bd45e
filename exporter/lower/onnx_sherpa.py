"""Lower a plan to the ONNX pair sherpa-onnx's Whisper recognizer loads (`--onnx-layout sherpa`).

sherpa-onnx binds its two sessions by position and reads its settings from the encoder's metadata
(../shared/research/clients.md), so this layout differs from edgeasr's own ONNX pair (exporter/lower/onnx.py)
in shapes and calling convention, not in how layers are quantised (the same placeholders, MatMulNBits /
GatherBlockQuantized / MatMulBnb4 rewrite and plan metadata):

* `encoder.onnx`: mel[N, n_mels, T] with T dynamic up to 3000 (sherpa feeds the clip's frames plus
  `tail_paddings`, not a padded 30 s window) -> cross_k, cross_v [L, N, H, ceil(T / 2), d / H] float16:
  every decoder layer's cross-attention keys and values, heads split, computed once per clip (their layout
  and type are opaque to sherpa, which passes them to the decoder unchanged; half precision: CROSS_DTYPE).
* `decoder.onnx`: tokens[N, n], self_k, self_v [L, N, 448, d], cross_k, cross_v, offset[1] -> logits
  [N, n, V], self_k, self_v (same fixed shape). The self-attention cache has a fixed size: the n new keys
  are scattered into slots offset .. offset + n - 1 (neither n nor the offset is baked into the graph);
  attention reads only the slots before offset and the n new ones. The first call takes
  the whole prompt at offset 0.
* `tokens.txt`: `<base64 of the token's bytes> <id>` per id below end-of-text, sherpa's vocabulary file;
  `tokenizer.json` as well, for edgeasr's runners.

The encoder carries every metadata key sherpa requires (its process exits when one is missing).
"""

from __future__ import annotations

import base64
from pathlib import Path

import torch
from torch import nn

from exporter.io import write_bytes
from exporter.lower.onnx import (
    CROSS_DTYPE,
    ActivationLayout,
    DecoderGraph,
    OnnxArtifacts,
    check_plan,
    export_graph,
    fused_encoder_attention,
    graph_metadata,
    layer_index_zero,
    marked_model,
    merge_heads,
    replace_markers,
    serialise_graph,
    tokenizer_json,
)
from exporter.lower.onnx_lora import lora_metadata, marked_lora_model, rewrite_branches
from exporter.lower.whisper_modules import attend, cross_keys_values, split_heads
from exporter.models import WhisperBundle
from exporter.quant.plan import QuantPlan
from runtimes.audio import FULL_FRAMES
from runtimes.contract import DECODER_FILE, ENCODER_FILE, META_LAYOUT, META_LORA, SHERPA_TOKENS_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import token_bytes
from runtimes.torch_runner import encode_unchecked

LAYOUT = "sherpa"
TEXT_CONTEXT = 448  # Whisper's decoder positions: the fixed self-attention cache length sherpa allocates


class SherpaEncoderGraph(nn.Module):
    """mel [N, n_mels, T] -> cross_k, cross_v [L, N, H, ceil(T/2), d / H], for any T up to 3000."""

    def __init__(self, model, activations: ActivationLayout = ActivationLayout()):
        super().__init__()
        self.encoder = model.model.encoder
        self.decoder_layers = model.model.decoder.layers
        self.n_heads = model.config.decoder_attention_heads
        self.activations = activations

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # HF's forward refuses anything but 3000 frames; each layer's feed-forward block runs in slices.
        states = encode_unchecked(self.encoder, mel, self.activations.run_layer())
        # Heads split here, once per clip: the decoder reads them as they are at every step (a transpose there
        # would copy every layer's keys and values per token).
        pairs = cross_keys_values(self.decoder_layers, states, self.n_heads, self.activations.cross_dtype)
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])


class SherpaDecoderGraph(DecoderGraph):
    """tokens, self_k, self_v, cross_k, cross_v, offset -> logits [N, n, V], self_k, self_v."""

    def forward(self, tokens, self_k, self_v, cross_k, cross_v, offset):
        # n and the positions as tensors computed from the inputs, so the trace keeps them dynamic.
        ones = torch.ones_like(tokens[0])
        positions = ones.cumsum(0) - 1 + offset  # [n]: offset .. offset + n - 1
        slots = torch.arange(self_k.shape[2])
        # Attention reads only the slots written so far, not all 448: every copy a step makes for it is then
        # as long as the text so far.
        written = torch.nonzero(slots < offset).squeeze(1)  # [offset]: 0 .. offset - 1
        seen = torch.cat([written, positions])  # the keys' positions: the cache's, then this call's
        # Query i (at positions[i]) sees keys at positions 0 .. positions[i].
        blocked = torch.full((1,), torch.finfo(torch.float32).min)
        mask = torch.where(seen[None, :] > positions[:, None], blocked, torch.zeros(1))
        x = self.embed_tokens(tokens) + self.embed_positions.weight.index_select(0, positions).unsqueeze(0)
        # The written slots of every layer at once: indexing the stacked cache per layer first would copy
        # all of it (ORT turns the per-layer gathers into one Split).
        past_k, past_v = self_k.index_select(2, written), self_v.index_select(2, written)
        zero = layer_index_zero(tokens)
        new_k, new_v = [], []
        for index, layer in enumerate(self.layers):
            at = zero + index
            attn = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            k_new, v_new = attn.k_proj(h), attn.v_proj(h)
            new_k.append(k_new)
            new_v.append(v_new)
            k = torch.cat([past_k[at], k_new], dim=1)
            v = torch.cat([past_v[at], v_new], dim=1)
            q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
            heads = attend(q, split_heads(k, self.n_heads), split_heads(v, self.n_heads), mask)
            x = x + attn.out_proj(merge_heads(heads))
            x = x + self._cross_attention(layer, layer.encoder_attn_layer_norm(x), cross_k[at], cross_v[at])
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        # The caches go out whole (sherpa's fixed [L, N, 448, d]), this call's rows scattered into slots
        # offset .. offset + n - 1 of every layer at once: one copy of each cache per call. The index is
        # expanded to the new rows' shape as traced, so neither n nor the offset is baked into the graph.
        rows_k, rows_v = torch.stack(new_k), torch.stack(new_v)  # [L, N, n, d]
        where = positions[None, None, :, None].expand_as(rows_k)
        out_k, out_v = self_k.scatter(2, where, rows_k), self_v.scatter(2, where, rows_v)
        return self.proj_out(self.layer_norm(x)), out_k, out_v


def export_encoder(model, n_mels: int, activations: ActivationLayout = ActivationLayout()) -> object:
    # Traced on an odd length below 3000 so the frame axis is not specialised to a constant.
    features = torch.zeros(1, n_mels, 1001)
    fused_encoder_attention(model)  # flash attention in ORT, sherpa-onnx's own build included
    dynamic = {"mel": {0: "N", 2: "T"}, "cross_k": {1: "N", 3: "T2"}, "cross_v": {1: "N", 3: "T2"}}
    graph = SherpaEncoderGraph(model, activations)
    return export_graph(graph, (features,), ["mel"], ["cross_k", "cross_v"], dynamic)


def export_decoder(model, cross_dtype: torch.dtype = CROSS_DTYPE) -> object:
    config = model.config
    tokens = torch.zeros(1, 3, dtype=torch.long)
    cache = torch.zeros(config.decoder_layers, 1, TEXT_CONTEXT, config.d_model)
    heads = config.decoder_attention_heads
    cross = torch.zeros(config.decoder_layers, 1, heads, 501, config.d_model // heads, dtype=cross_dtype)
    offset = torch.zeros(1, dtype=torch.long)
    dynamic = {
        "tokens": {0: "N", 1: "n"},
        "in_self_k": {1: "N"},
        "in_self_v": {1: "N"},
        "cross_k": {1: "N", 3: "T2"},
        "cross_v": {1: "N", 3: "T2"},
        "logits": {0: "N", 1: "n"},
        "out_self_k": {1: "N"},
        "out_self_v": {1: "N"},
    }
    return export_graph(
        SherpaDecoderGraph(model),
        (tokens, cache, cache, cross, cross, offset),
        ["tokens", "in_self_k", "in_self_v", "cross_k", "cross_v", "offset"],
        ["logits", "out_self_k", "out_self_v"],
        dynamic,
    )


def _token_id(tokenizer, token: str) -> int | None:
    value = tokenizer.token_to_id(token)
    return None if value is None else int(value)


def sherpa_metadata(bundle: WhisperBundle) -> dict[str, str]:
    """The encoder metadata sherpa-onnx reads (all required; the language lists when multilingual)."""
    config, special, tokenizer = bundle.model.config, bundle.special, bundle.tokenizer
    no_speech = _token_id(tokenizer, "<|nospeech|>") or _token_id(tokenizer, "<|nocaptions|>")
    blank = tokenizer.encode(" ", add_special_tokens=False).ids
    if no_speech is None or not blank:
        raise EdgeAsrError(f"model {bundle.model_id}: its tokenizer lacks the no-speech or blank token sherpa needs")
    # Whisper's default prompt: start, then (multilingual) English and transcribe; sherpa replaces the
    # language and task entries with what the app configures, and appends no-timestamps itself.
    sot_sequence = [special.sot]
    if special.is_multilingual:
        sot_sequence += [special.languages["en"], special.transcribe]
    values = {
        "model_type": f"whisper-{bundle.model_id}",
        "version": "1",
        "n_mels": bundle.n_mels,
        "n_audio_ctx": config.max_source_positions,
        "n_audio_state": config.d_model,
        "n_audio_head": config.encoder_attention_heads,
        "n_audio_layer": config.encoder_layers,
        "n_vocab": config.vocab_size,
        "n_text_ctx": TEXT_CONTEXT,
        "n_text_state": config.d_model,
        "n_text_head": config.decoder_attention_heads,
        "n_text_layer": config.decoder_layers,
        "sot": special.sot,
        "sot_index": 0,
        "eot": special.eot,
        "blank_id": blank[0],
        "is_multilingual": int(special.is_multilingual),
        "no_speech": no_speech,
        "translate": special.translate,
        "transcribe": special.transcribe,
        "no_timestamps": special.no_timestamps,
        "sot_sequence": ",".join(str(t) for t in sot_sequence),
    }
    if special.is_multilingual:
        codes = sorted(special.languages, key=special.languages.get)
        values["all_language_tokens"] = ",".join(str(special.languages[c]) for c in codes)
        values["all_language_codes"] = ",".join(codes)
    return {key: str(value) for key, value in values.items()}


def tokens_txt(bundle: WhisperBundle) -> bytes:
    """sherpa's vocabulary: one line per id below end-of-text, the token's bytes in base64, then the id."""
    lines = []
    for token_id in range(bundle.special.eot):
        piece = bundle.tokenizer.id_to_token(token_id)
        try:
            if piece is None:
                raise ValueError(f"no token {token_id}")
            raw = token_bytes(piece)
        except ValueError:
            raise EdgeAsrError(
                f"token {token_id} ({piece!r}) is not a byte-level BPE token; not a Whisper tokenizer"
            ) from None
        lines.append(f"{base64.b64encode(raw).decode('ascii')} {token_id}")
    return ("\n".join(lines) + "\n").encode("ascii")


def lower_onnx_sherpa(
    bundle: WhisperBundle,
    plan: QuantPlan,
    out_dir: str | Path,
    n_frames: int = FULL_FRAMES,
    activations: ActivationLayout = ActivationLayout(),
) -> OnnxArtifacts:
    """Write the sherpa-layout encoder.onnx, decoder.onnx, tokens.txt and tokenizer.json into `out_dir`;
    `activations`: the export's defaults, or the layout before them (benchmarks/onnx_activations.py)."""
    if n_frames != FULL_FRAMES:
        raise EdgeAsrError(
            "the sherpa layout takes up to 30 s of audio (sherpa-onnx feeds the clip plus its tail padding, up "
            "to 3000 frames); drop --max-audio-seconds / the memory budget that needs a shorter context"
        )
    check_plan(bundle, plan)
    return _write_pair(bundle, plan, Path(out_dir), marked_model(bundle, plan), activations=activations)


def lower_onnx_sherpa_lora(
    bundle: WhisperBundle, plan: QuantPlan, out_dir: str | Path, lora_info: dict
) -> OnnxArtifacts:
    """NF4 + LoRA in the sherpa layout: the base's MatMulBnb4 nodes and each adapter's two MatMuls, with the
    adapter's weights as plain initializers. sherpa-onnx binds its inputs by position, so the overridable
    adapter inputs of edgeasr's layout (exporter/lower/onnx_lora.py) have no place here: this pair is one
    user's model, and another user's adapter means another pair. `bundle.model` carries the LoRA modules."""
    check_plan(bundle, plan)
    model = marked_lora_model(bundle, plan)
    return _write_pair(bundle, plan, Path(out_dir), model, lora_info)


def _write_pair(
    bundle,
    plan,
    out_dir: Path,
    model,
    lora_info: dict | None = None,
    activations: ActivationLayout = ActivationLayout(),
) -> OnnxArtifacts:
    graphs = {
        "encoder": export_encoder(model, bundle.n_mels, activations),
        "decoder": export_decoder(model, activations.cross_dtype),
    }
    files = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    for graph, proto in graphs.items():
        params = rewrite_branches(proto, model, overridable=False) if lora_info is not None else None
        replace_markers(proto, plan, model)
        metadata = {**graph_metadata(bundle, plan, graph, FULL_FRAMES), META_LAYOUT: LAYOUT}
        if params is not None:
            metadata[META_LORA] = lora_metadata(lora_info, params)
        if graph == "encoder":
            metadata.update(sherpa_metadata(bundle))
        write_bytes(files[graph], serialise_graph(proto, metadata))
    write_bytes(out_dir / SHERPA_TOKENS_FILE, tokens_txt(bundle))
    write_bytes(out_dir / TOKENIZER_FILE, tokenizer_json(bundle))
    return OnnxArtifacts(out_dir, files["encoder"], files["decoder"], out_dir / TOKENIZER_FILE)
