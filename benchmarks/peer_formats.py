"""The peers' model files, written from the same Hugging Face Whisper that edgeasr exports.

* whisper.cpp: a ggml model file (`write_ggml`). Layout, as whisper.cpp 1.8's loader reads it: the magic
  "ggml", eleven int32 hyperparameters (the last one the file type), the log-mel filter bank (n_mels x 201
  float32), the byte-level vocabulary up to the first special token (whisper.cpp adds the special tokens
  itself), then one record per tensor: n_dims, name length, ggml type, the dims innermost first, the name,
  the data. Names follow OpenAI's checkpoint (encoder.blocks.0.attn.query.weight, ...). As whisper.cpp's
  own converter and quantiser do: 2-D matrices (every Linear and the token embedding) take the file's
  quantisation type; the convolution kernels stay float16; vectors, the conv biases (stored as n x 1) and
  both positional embeddings stay float32. The block codes come from ggml's own `ggml_quantize_chunk`
  (the library pywhispercpp ships), so the bytes are what whisper.cpp's quantize tool would write.
* CTranslate2: an int8 model folder from its Transformers converter (`write_ct2_int8`).
"""

from __future__ import annotations

import ctypes
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

GGML_QUANTS = ("q4_0", "q5_0", "q8_0")
_GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q5_0": 6, "q8_0": 8}
_FILE_TYPES = {"f16": 1, "q4_0": 2, "q8_0": 7, "q5_0": 8}  # ggml_ftype
_QNT_VERSION = 2  # GGML_QNT_VERSION; quantised files store ftype + version * 1000
_MAGIC = 0x67676D6C
_FLOAT32_NAMES = ("encoder.positional_embedding", "decoder.positional_embedding")


def _ggml():
    import site

    import pywhispercpp  # noqa: F401  (its wheel ships libggml-base next to the extension module)

    for root in site.getsitepackages():
        path = Path(root) / "libggml-base.so"
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            lib.ggml_quantize_chunk.restype = ctypes.c_size_t
            lib.ggml_quantize_chunk.argtypes = [
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_void_p,
            ]
            lib.ggml_row_size.restype = ctypes.c_size_t
            lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
            return lib
    raise RuntimeError("libggml-base.so not found: pip install -e '.[peers]' (pywhispercpp)")


def _quantize(lib, matrix: np.ndarray, quant: str) -> bytes:
    rows, cols = matrix.shape
    src = np.ascontiguousarray(matrix, dtype=np.float32)
    kind = _GGML_TYPES[quant]
    dst = np.zeros(lib.ggml_row_size(kind, cols) * rows, dtype=np.uint8)
    written = lib.ggml_quantize_chunk(kind, src.ctypes.data, dst.ctypes.data, 0, rows, cols, None)
    return dst[:written].tobytes()


def _openai_names(config) -> dict[str, str]:
    """HF state-dict name -> OpenAI checkpoint name (the names whisper.cpp looks up)."""
    names = {
        "model.encoder.conv1.weight": "encoder.conv1.weight",
        "model.encoder.conv1.bias": "encoder.conv1.bias",
        "model.encoder.conv2.weight": "encoder.conv2.weight",
        "model.encoder.conv2.bias": "encoder.conv2.bias",
        "model.encoder.embed_positions.weight": "encoder.positional_embedding",
        "model.encoder.layer_norm.weight": "encoder.ln_post.weight",
        "model.encoder.layer_norm.bias": "encoder.ln_post.bias",
        "model.decoder.embed_positions.weight": "decoder.positional_embedding",
        "model.decoder.embed_tokens.weight": "decoder.token_embedding.weight",
        "model.decoder.layer_norm.weight": "decoder.ln.weight",
        "model.decoder.layer_norm.bias": "decoder.ln.bias",
    }
    parts = {
        "self_attn.q_proj": "attn.query",
        "self_attn.k_proj": "attn.key",
        "self_attn.v_proj": "attn.value",
        "self_attn.out_proj": "attn.out",
        "self_attn_layer_norm": "attn_ln",
        "encoder_attn.q_proj": "cross_attn.query",
        "encoder_attn.k_proj": "cross_attn.key",
        "encoder_attn.v_proj": "cross_attn.value",
        "encoder_attn.out_proj": "cross_attn.out",
        "encoder_attn_layer_norm": "cross_attn_ln",
        "fc1": "mlp.0",
        "fc2": "mlp.2",
        "final_layer_norm": "mlp_ln",
    }
    for stack, n_layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(n_layers):
            for hf, oa in parts.items():
                if stack == "encoder" and hf.startswith("encoder_attn"):
                    continue
                for leaf in ("weight", "bias"):
                    names[f"model.{stack}.layers.{i}.{hf}.{leaf}"] = f"{stack}.blocks.{i}.{oa}.{leaf}"
    return names


def _vocab_bytes(bundle) -> list[bytes]:
    """The byte string of every ordinary token, in id order, up to the first special token."""
    from runtimes.tokenizer import token_bytes

    vocab = bundle.tokenizer.get_vocab()
    by_id = {i: token for token, i in vocab.items()}
    return [token_bytes(by_id[i]) for i in range(bundle.special.eot)]


def _tensor(name: str, array: np.ndarray, quant: str, lib) -> bytes:
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        array = array.reshape(-1, 1)
    if array.ndim == 2 and name not in _FLOAT32_NAMES and not name.endswith(".bias") and quant != "f16":
        kind, data = quant, _quantize(lib, array, quant)
    elif array.ndim >= 2 and name not in _FLOAT32_NAMES and not name.endswith(".bias"):
        kind, data = "f16", array.astype(np.float16).tobytes()
    else:
        kind, data = "f32", array.astype(np.float32).tobytes()
    encoded = name.encode()
    header = struct.pack("<3i", array.ndim, len(encoded), _GGML_TYPES[kind])
    return header + struct.pack(f"<{array.ndim}i", *reversed(array.shape)) + encoded + data


def write_ggml(bundle, out: Path, quant: str) -> None:
    """A whisper.cpp model file of `bundle`'s weights in `quant` (f16, q4_0, q5_0, q8_0), written atomically."""
    if quant not in _FILE_TYPES:
        raise ValueError(f"unknown ggml quantisation {quant!r}; choose one of {', '.join(_FILE_TYPES)}")
    config = bundle.model.config
    lib = _ggml()
    ftype = _FILE_TYPES[quant] + (0 if quant == "f16" else _QNT_VERSION * 1000)
    hparams = (
        config.vocab_size,
        config.max_source_positions,
        config.d_model,
        config.encoder_attention_heads,
        config.encoder_layers,
        config.max_target_positions,
        config.d_model,
        config.decoder_attention_heads,
        config.decoder_layers,
        config.num_mel_bins,
        ftype,
    )
    filters = np.asarray(bundle.feature_extractor.mel_filters, dtype=np.float32).T  # (n_mels, 201)
    names = _openai_names(config)
    state = {k: v.detach().float().numpy() for k, v in bundle.model.state_dict().items() if k in names}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<I", _MAGIC) + struct.pack("<11i", *hparams))
            f.write(struct.pack("<2i", *filters.shape) + filters.tobytes())
            tokens = _vocab_bytes(bundle)
            f.write(struct.pack("<i", len(tokens)))
            for token in tokens:
                f.write(struct.pack("<i", len(token)) + token)
            for hf_name, array in state.items():
                f.write(_tensor(names[hf_name], array, quant, lib))
        os.replace(staging, out)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def write_ct2_int8(bundle, out: Path) -> None:
    """A CTranslate2 int8 Whisper folder converted from the bundle's Hugging Face folder (atomic)."""
    from ctranslate2.converters import TransformersConverter

    staging = out.with_name(out.name + ".partial")
    converter = TransformersConverter(
        str(bundle.folder), copy_files=["tokenizer.json", "preprocessor_config.json"], load_as_float16=True
    )
    converter.convert(str(staging), quantization="int8", force=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)


def artifact_bytes(path: Path) -> int:
    """What an app ships: the ggml file, or every file of the CTranslate2 folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir() if p.is_file())
