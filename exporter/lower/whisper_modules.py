"""Export-friendly Whisper pieces: the encoder, and a text decoder with a static KV cache.

The decoder is written out explicitly over the Hugging Face submodules (same Linear / LayerNorm / Embedding
modules, so quantisation applied to the HF model by layer name carries over), instead of wrapping HF's cache
classes: their internals change between transformers releases (transformers 5.23's StaticCache appends at a
`cumulative_length` counter and ignores cache_position, which breaks under torch.export). Here the cache is
a plain key and value buffer per layer written at `cache_position`; positions after it are masked, so a new
utterance needs no reset: it overwrites positions 0, 1, ... before attending to them.

Signature (method names as in ExecuTorch's ASR runner and optimum-executorch):
    encoder(input_features[1, n_mels, 3000]) -> k_0, v_0, ..., k_{L-1}, v_{L-1}, each [H, 1500, D]
    text_decoder(decoder_input_ids[1, 1], k_0, v_0, ..., cache_position[1]) -> logits[1, 1, V]
i.e. the decoder takes the encoder's outputs, in order, between the token and the position.
An export with a shorter audio context takes F < 3000 frames and attends over F / 2 positions instead.

Unlike optimum-executorch, whose decoder takes the encoder's hidden states and recomputes every layer's
cross-attention keys and values at every step, the encoder here ends with those projections (as the ONNX
encoder does): they are the same for every token, and recomputing them was most of a decoder step. The
runner holds L x 2 tensors of 1500 x d while decoding instead of one.
Attention is written out (matmul, additive mask, softmax, matmul): torch's scaled_dot_product_attention
decomposes with a "safe softmax" whose eq / any / where ops XNNPACK does not take, so they ran as portable
kernels between delegates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from exporter.lower.settings import QUERY_CHUNKS
from runtimes.torch_runner import encode_frames


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention written out: q is pre-scaled; `mask` is added to the scores (0 or a large negative)."""
    # HF's eager attention computes in this order (scores + mask, softmax), which keeps parity close.
    scores = torch.matmul(q, k.transpose(2, 3))
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`attend` for one query token with batch 1, as 3-D batched matmuls over the heads: 4-D matmul exports
    as expand + bmm, and the expand copies every key and value at every step. `q` is [1, H, 1, D]; `k`, `v`
    are [1, H, S, D] or [H, S, D]. Returns [1, H, D], ready to merge the heads."""
    heads, dim = q.shape[1], q.shape[3]
    length = k.shape[-2]
    scores = torch.bmm(q.reshape(heads, 1, dim), k.reshape(heads, length, dim).transpose(1, 2))
    if mask is not None:
        scores = scores + mask.reshape(1, 1, length)
    return torch.bmm(torch.softmax(scores, dim=-1), v.reshape(heads, length, dim)).reshape(1, heads, dim)


CHUNKED_ATTENTION = "edgeasr_chunked"  # its name in transformers' attention registry


def chunked_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """HF's eager attention (same signature, same order of operations) as 3-D batched matmuls over the heads,
    on QUERY_CHUNKS slices of the queries one after the other. 4-D matmuls export as expand + bmm, and the
    expand copies each attention map into ExecuTorch's planned memory outside XNNPACK; with bmm the maps stay
    inside the delegate, and with slices only one slice's scores and probabilities are alive at a time.
    Returns no weights."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    batch, heads, length, dim = query.shape
    queries = query.reshape(batch * heads, length, dim)
    keys = key.reshape(batch * heads, -1, dim).transpose(1, 2)
    values = value.reshape(batch * heads, -1, dim)
    step = -(-length // QUERY_CHUNKS)
    outputs = []
    for start in range(0, length, step):
        scores = torch.bmm(queries[:, start : start + step], keys)
        if scaling != 1.0:  # HF's Whisper scales the queries and passes 1.0: x * 1.0 is x, and one map slice less
            scores = scores * scaling
        if attention_mask is not None:
            rows = scores.shape[1]
            scores = (scores.reshape(batch, heads, rows, -1) + attention_mask[:, :, start : start + step]).reshape(
                batch * heads, rows, -1
            )
        outputs.append(torch.bmm(F.softmax(scores, dim=-1), values))
    merged = torch.cat(outputs, dim=1).reshape(batch, heads, length, dim)
    return merged.transpose(1, 2).contiguous(), None


def register_chunked_attention() -> str:
    """Make "chunked" available to transformers' attention layers; returns the name to set in the config."""
    from transformers import AttentionInterface

    AttentionInterface.register(CHUNKED_ATTENTION, chunked_attention)
    return CHUNKED_ATTENTION


def cross_keys_values(
    decoder_layers, states: torch.Tensor, n_heads: int, dtype: torch.dtype | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each decoder layer's cross-attention (keys, values) of the encoder output, each [1, H, T, D]; with
    `dtype`, each projection is cast to it before its heads are split (the ONNX pair's half-precision keys)."""

    def project(linear) -> torch.Tensor:
        out = linear(states)
        return split_heads(out if dtype in (None, out.dtype) else out.to(dtype), n_heads)  # a no-op `to` traces a Cast

    return [(project(layer.encoder_attn.k_proj), project(layer.encoder_attn.v_proj)) for layer in decoder_layers]


class WhisperEncoderModule(nn.Module):
    """input_features -> every decoder layer's cross-attention keys and values, as 2 x L outputs
    (k_0, v_0, k_1, v_1, ...), each [H, T, D]. Separate tensors, not one stacked one: taking a layer out of a
    stacked input is a `select_copy` in ExecuTorch, a copy of the keys at every step."""

    def __init__(self, hf_model):
        super().__init__()
        self.encoder = hf_model.model.encoder
        self.decoder_layers = hf_model.model.decoder.layers
        self.n_heads = hf_model.config.decoder_attention_heads

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states = encode_frames(self.encoder, input_features)
        # One window: the projections take [T, d], so each output is written once, by the XNNPACK delegate
        # that computes it. Projected with the batch axis, taking it away (`[0]`) exported as a select_copy
        # outside XNNPACK and `.contiguous()` as another copy: the plan held the keys and values three times
        # (tiny.en's encoder plan 36.9 MB, 16 hidden states).
        frames = states.reshape(states.shape[-2], states.shape[-1])
        outputs = []
        for layer in self.decoder_layers:
            for project in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj):
                outputs.append(self._heads_first(project(frames)))
        return tuple(outputs)

    def _heads_first(self, x: torch.Tensor) -> torch.Tensor:
        """[T, d] -> [H, T, D]"""
        length, dim = x.shape
        return x.view(length, self.n_heads, dim // self.n_heads).transpose(0, 1).contiguous()


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, length, dim) -> (batch, heads, length, dim / heads)."""
    batch, length, dim = x.shape
    return x.view(batch, length, n_heads, dim // n_heads).transpose(1, 2)


class RunnerEncoderModule(nn.Module):
    """ExecuTorch's ASR runner contract: `encoder` returns exactly one tensor. The cross-attention keys and
    values are still computed once per clip, stacked as [2L, H, T, D] (k_0, v_0, k_1, v_1, ...)."""

    def __init__(self, hf_model):
        super().__init__()
        self.inner = WhisperEncoderModule(hf_model)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.inner(input_features))


class RunnerTextDecoderModule(nn.Module):
    """ExecuTorch's ASR runner contract: text_decoder(decoder_input_ids[1, 1], encoder_output, cache_position[1])
    -> logits. The stacked keys and values are taken apart inside the method: one copy of each layer's
    slice per step (select_copy), the price of the single encoder output."""

    def __init__(self, hf_model, max_seq_len: int = 448):
        super().__init__()
        self.inner = WhisperTextDecoderModule(hf_model, max_seq_len)

    def forward(
        self, decoder_input_ids: torch.Tensor, encoder_output: torch.Tensor, cache_position: torch.Tensor
    ) -> torch.Tensor:
        return self.inner(decoder_input_ids, *encoder_output.unbind(0), cache_position)


class _TextDecoderParts(nn.Module):
    """The HF decoder's submodules (same names, so quantisation by layer name carries over) and shapes."""

    def __init__(self, hf_model, max_seq_len: int = 448):
        super().__init__()
        config = hf_model.config
        decoder = hf_model.model.decoder
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.layers = decoder.layers
        self.layer_norm = decoder.layer_norm
        self.proj_out = hf_model.proj_out
        self.n_heads = config.decoder_attention_heads
        self.head_dim = config.d_model // self.n_heads
        self.scaling = self.head_dim**-0.5
        self.max_seq_len = max_seq_len


class WhisperTextDecoderModule(_TextDecoderParts):
    def __init__(self, hf_model, max_seq_len: int = 448):
        super().__init__(hf_model, max_seq_len)
        head_dim = self.head_dim
        # Mutable state of the exported program, one buffer per layer and kind: a slice of one stacked buffer
        # written in place exports as select_scatter, a full copy of the whole cache (portable `where`) per
        # layer and step. persistent=False keeps them out of the state dict.
        for index in range(len(self.layers)):
            self.register_buffer(f"k_cache_{index}", torch.zeros(self.n_heads, max_seq_len, head_dim), persistent=False)
            self.register_buffer(f"v_cache_{index}", torch.zeros(self.n_heads, max_seq_len, head_dim), persistent=False)

    def _self_attention(
        self, index: int, layer, h: torch.Tensor, cache_position: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        attn = layer.self_attn
        q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
        k_cache, v_cache = getattr(self, f"k_cache_{index}"), getattr(self, f"v_cache_{index}")
        # index_put on the [H, S, D] buffer: ExecuTorch's reinplace pass makes it an in-place write of one
        # position (its in-place kernel wants the indexed dim's values sized like the index: [H, 1, D]).
        k_cache[:, cache_position] = attn.k_proj(h).reshape(self.n_heads, 1, -1)
        v_cache[:, cache_position] = attn.v_proj(h).reshape(self.n_heads, 1, -1)
        return attn.out_proj(attend_one(q, k_cache, v_cache, mask).reshape(h.shape))

    def _cross_attention(self, layer, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        q = split_heads(layer.encoder_attn.q_proj(h) * self.scaling, self.n_heads)
        return layer.encoder_attn.out_proj(attend_one(q, keys, values).reshape(h.shape))

    def forward(self, decoder_input_ids: torch.Tensor, *cross_and_position: torch.Tensor) -> torch.Tensor:
        """decoder_input_ids [1, 1], then the encoder's 2 x L outputs, then cache_position [1]."""
        *cross, cache_position = cross_and_position
        x = self.embed_tokens(decoder_input_ids) + self.embed_positions.weight[cache_position].unsqueeze(0)
        positions = torch.arange(self.max_seq_len)
        # Cache slots after the current position hold an earlier utterance (or zeros): their scores get the
        # most negative float, so softmax gives them exactly zero weight.
        blocked = torch.full((1,), torch.finfo(torch.float32).min)
        mask = torch.where(positions <= cache_position[0], torch.zeros(1), blocked)
        for index, layer in enumerate(self.layers):
            x = x + self._self_attention(index, layer, layer.self_attn_layer_norm(x), cache_position, mask)
            x = x + self._cross_attention(
                layer, layer.encoder_attn_layer_norm(x), cross[2 * index], cross[2 * index + 1]
            )
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(F.gelu(layer.fc1(h)))
        return self.proj_out(self.layer_norm(x))


class StatelessTextDecoderModule(_TextDecoderParts):
    """The text decoder for converters without mutable state (LiteRT): the self-attention cache is an input
    and each step returns its new keys and values, which the runner writes into its cache at `cache_position`.

        decoder(decoder_input_ids[1, 1], cache_position[1], k_0, v_0, ..., k_{L-1}, v_{L-1} (self, each
                [H, S, D]), then the encoder's 2 x L outputs) -> logits[1, 1, V], k_new_0, v_new_0, ... ([H, 1, D])

    The current token attends to the cache's first `cache_position` slots and to itself (appended as slot
    S), so the cache is only read here: no scatter op, and slots past the position may hold anything."""

    def forward(self, decoder_input_ids: torch.Tensor, cache_position: torch.Tensor, *caches: torch.Tensor):
        n = len(self.layers)
        self_caches, cross = caches[: 2 * n], caches[2 * n :]
        x = self.embed_tokens(decoder_input_ids) + self.embed_positions.weight[cache_position].unsqueeze(0)
        slots = torch.arange(self.max_seq_len + 1)
        blocked = torch.full((1,), torch.finfo(torch.float32).min)
        mask = torch.where((slots < cache_position[0]) | (slots == self.max_seq_len), torch.zeros(1), blocked)
        new = []
        for index, layer in enumerate(self.layers):
            h = layer.self_attn_layer_norm(x)
            attn = layer.self_attn
            q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
            k_new = attn.k_proj(h).reshape(self.n_heads, 1, self.head_dim)
            v_new = attn.v_proj(h).reshape(self.n_heads, 1, self.head_dim)
            keys = torch.cat([self_caches[2 * index], k_new], dim=1)
            values = torch.cat([self_caches[2 * index + 1], v_new], dim=1)
            x = x + attn.out_proj(attend_one(q, keys, values, mask).reshape(h.shape))
            h = layer.encoder_attn_layer_norm(x)
            q = split_heads(layer.encoder_attn.q_proj(h) * self.scaling, self.n_heads)
            x = x + layer.encoder_attn.out_proj(attend_one(q, cross[2 * index], cross[2 * index + 1]).reshape(h.shape))
            x = x + layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))
            new += [k_new, v_new]
        return (self.proj_out(self.layer_norm(x)), *new)
