"""Export-friendly Whisper pieces: the encoder, and a text decoder with a static KV cache.

The decoder is written out explicitly over the Hugging Face submodules (same Linear / LayerNorm / Embedding
modules, so quantisation applied to the HF model by layer name carries over), instead of wrapping HF's cache
classes: their internals change between transformers releases (transformers 5.23's StaticCache appends at a
`cumulative_length` counter and ignores cache_position, which breaks under torch.export). Here the cache is
two plain buffers written at `cache_position`; positions after it are masked, so a new utterance needs no
reset: it overwrites positions 0, 1, ... before attending to them.

Signature (the layout ExecuTorch's ASR runner and optimum-executorch use):
    encoder(input_features[1, n_mels, 3000]) -> encoder_hidden_states[1, 1500, d]
    text_decoder(decoder_input_ids[1, 1], encoder_hidden_states[1, 1500, d], cache_position[1]) -> logits[1, 1, V]
An export with a shorter audio context takes F < 3000 frames and attends over F / 2 positions instead.
Cross-attention keys and values are recomputed from encoder_hidden_states on every step, as in that layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from exporter.audio import FULL_FRAMES



def encode_frames(encoder, input_features: torch.Tensor) -> torch.Tensor:
    """HF's Whisper encoder on any even number of frames up to 3000 (a shorter audio context).

    transformers rejects inputs other than 3000 frames; this is the same computation (convolutions, the
    first frames/2 positional embeddings, the layers, the final norm) without that check, so an encoder
    over 10 s of frames attends over 500 positions instead of 1500: attention maps 9x smaller.
    """
    frames = input_features.shape[-1]
    if frames == FULL_FRAMES:
        return encoder(input_features).last_hidden_state
    if frames % 2 or not 0 < frames < FULL_FRAMES:
        raise ValueError(f"the encoder takes an even number of frames up to {FULL_FRAMES}, not {frames}")
    x = F.gelu(encoder.conv1(input_features))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        x = layer(x, None)
    return encoder.layer_norm(x)


class WhisperEncoderModule(nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.encoder = hf_model.model.encoder

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return encode_frames(self.encoder, input_features)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, length, dim) -> (batch, heads, length, dim / heads)."""
    batch, length, dim = x.shape
    return x.view(batch, length, n_heads, dim // n_heads).transpose(1, 2)


class WhisperTextDecoderModule(nn.Module):
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
        head_dim = config.d_model // self.n_heads
        self.scaling = head_dim**-0.5
        self.max_seq_len = max_seq_len
        shape = (len(self.layers), 1, self.n_heads, max_seq_len, head_dim)
        # Mutable state of the exported program: persistent=False keeps it out of the state dict.
        self.register_buffer("k_cache", torch.zeros(shape), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape), persistent=False)

    def _self_attention(self, index: int, layer, h: torch.Tensor, cache_position: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
        k = split_heads(attn.k_proj(h), self.n_heads)
        v = split_heads(attn.v_proj(h), self.n_heads)
        self.k_cache[index].index_copy_(2, cache_position, k)
        self.v_cache[index].index_copy_(2, cache_position, v)
        out = F.scaled_dot_product_attention(q, self.k_cache[index], self.v_cache[index], attn_mask=mask,
                                             scale=1.0)
        return attn.out_proj(out.transpose(1, 2).reshape(h.shape))

    def _cross_attention(self, layer, h: torch.Tensor, encoder_states: torch.Tensor) -> torch.Tensor:
        attn = layer.encoder_attn
        q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
        k = split_heads(attn.k_proj(encoder_states), self.n_heads)
        v = split_heads(attn.v_proj(encoder_states), self.n_heads)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return attn.out_proj(out.transpose(1, 2).reshape(h.shape))

    def forward(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                cache_position: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(decoder_input_ids) + self.embed_positions.weight[cache_position].unsqueeze(0)
        positions = torch.arange(self.max_seq_len)
        mask = (positions <= cache_position[0]).view(1, 1, 1, self.max_seq_len)
        for index, layer in enumerate(self.layers):
            x = x + self._self_attention(index, layer, layer.self_attn_layer_norm(x), cache_position, mask)
            x = x + self._cross_attention(layer, layer.encoder_attn_layer_norm(x), encoder_hidden_states)
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(F.gelu(layer.fc1(h)))
        return self.proj_out(self.layer_norm(x))
