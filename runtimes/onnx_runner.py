"""ONNX Runtime runner: the encoder.onnx / decoder.onnx pair written by `exporter.lower.onnx` (edgeasr's
layout) or by `exporter.lower.onnx_sherpa` (the layout sherpa-onnx loads; `edgeasr.layout` says which).

The encoder returns every decoder layer's cross-attention keys and values; a decoder session keeps them and
the self-attention cache (growing, or fixed-size with an offset in the sherpa layout) as numpy arrays and
feeds them back on every step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtimes.allocator import fix_mmap_threshold
from runtimes.audio import FRAMES_PER_SECOND, FULL_FRAMES, SAMPLE_RATE, log_mel_frames
from runtimes.base import Runner
from runtimes.contract import (
    DECODER_FILE,
    ENCODER_FILE,
    META_LAYOUT,
    META_N_FRAMES,
    META_N_MELS,
    META_PLAN,
    META_SPECIAL,
    TOKENIZER_FILE,
)
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import SpecialTokens, load_tokenizer


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # an optional runtime: say how to get it rather than a traceback
        raise EdgeAsrError("the onnx runner needs onnxruntime (pip install onnxruntime==1.31.1)") from exc
    return onnxruntime


def runner_session(path: Path, threads: int | None, memory_arena: bool = False, config: dict[str, str] | None = None):
    """An ORT session as the runner holds it; `config`: further session config entries (key -> value)."""
    ort = _import_onnxruntime()
    if not path.is_file():
        raise EdgeAsrError(f"ONNX model not found: {path} (lower a plan with the onnx target first)")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: NF4 + LoRA graphs would print a warning per adapter input
    if threads:
        options.intra_op_num_threads = threads
    # ORT's defaults, its CPU arena (keeps freed blocks for reuse, grows in large steps) and memory patterns
    # (one block pre-planned per input-shape set, kept for each set seen), hold more than the live tensors.
    # Both off, activation memory follows the graph's liveness: base's 46 MB pair peaked 196-205 MB above the
    # process's baseline with both off against 274-289 MB with both on, glibc's allocator left as it is
    # (benchmarks/results/onnx_memory_base.md); runtimes/allocator.py goes further.
    options.enable_cpu_mem_arena = memory_arena
    options.enable_mem_pattern = memory_arena
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types; all mean an unusable file
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeAsrError(f"{path} is not a loadable ONNX model: {first_line}") from exc


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `metadata_props` of an .onnx file, without loading its weights into a session."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"ONNX model not found: {path}")
    try:
        import onnx
    except ImportError as exc:
        raise EdgeAsrError("reading ONNX metadata needs the onnx package (pip install onnx==1.23.2)") from exc
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends: all mean "not an ONNX file"
        raise EdgeAsrError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc
    return {entry.key: entry.value for entry in proto.metadata_props}


def read_plan_from_onnx(path: str | Path) -> dict:
    """The plan JSON (as a dict) an edgeasr .onnx file was lowered from."""
    return plan_from_metadata(read_metadata(path), path)


def plan_from_metadata(metadata: dict[str, str], path: str | Path) -> dict:
    """The plan in metadata already read from `path` (see `read_metadata`)."""
    if META_PLAN not in metadata:
        raise EdgeAsrError(f"{path} carries no edgeasr plan (was it written by edgeasr?)")
    return json.loads(metadata[META_PLAN])


def _metadata(session, path: Path, key: str) -> str:
    metadata = session.get_modelmeta().custom_metadata_map
    if key not in metadata:
        raise EdgeAsrError(f"{path} lacks the {key} metadata; it was not written by edgeasr's ONNX lowering")
    return metadata[key]


def _adapter_run_options(path: Path):
    """(RunOptions activating one `.onnx_adapter` file, the adapter). RunOptions does not own the adapter:
    the caller must keep the adapter object alive as long as the options are used."""
    ort = _import_onnxruntime()
    if not path.is_file():
        raise EdgeAsrError(f"LoRA adapter file not found: {path} (written by `edgeasr export --lora`)")
    adapter = ort.LoraAdapter()
    adapter.Load(str(path))
    options = ort.RunOptions()
    options.add_active_adapter(adapter)
    return options, adapter


class _OnnxDecoderSession:
    def __init__(self, session, cross_k: np.ndarray, cross_v: np.ndarray, run_options=None):
        self.session = session
        self.run_options = run_options
        self.cross_k = cross_k
        self.cross_v = cross_v
        empty = cross_k.shape[:3] + (0,) + cross_k.shape[4:]  # same layers, heads, head size; no positions
        self.self_k = np.zeros(empty, dtype=np.float32)
        self.self_v = np.zeros(empty, dtype=np.float32)

    def step(self, tokens: list[int]) -> np.ndarray:
        logits, self.self_k, self.self_v = self.session.run(
            None,
            {
                "tokens": np.asarray([tokens], dtype=np.int64),
                "self_k": self.self_k,
                "self_v": self.self_v,
                "cross_k": self.cross_k,
                "cross_v": self.cross_v,
            },
            self.run_options,
        )
        return logits[0]


class _SherpaLayoutDecoderSession:
    """The sherpa-layout decoder (exporter/lower/onnx_sherpa.py): a fixed-size self-attention cache the graph
    writes at `offset`, which this session advances by the tokens it passed.

    The cache is updated in place: each cache output is bound to its input's buffer. The graph's only writer
    of a cache is its final ScatterElements, and ORT's ScatterElements skips copying its input when the output
    is that very buffer (the kernel allows the runtime to reuse the input); every read of the cache (its written
    slots) feeds the new keys that ScatterElements consumes, so all reads happen before the write. This saves
    a copy of both caches per token (11 MB for base) and the memory of holding two of each.
    """

    def __init__(self, session, cross_k: np.ndarray, cross_v: np.ndarray, run_options=None):
        self.session = session
        self.run_options = run_options
        layers, _, context, width = session.get_inputs()[1].shape  # [L, N, 448, d]: fixed but N
        self.self_k = np.zeros((layers, cross_k.shape[1], context, width), dtype=np.float32)
        self.self_v = np.zeros_like(self.self_k)
        # Bound by address: these arrays must live (and stay contiguous) as long as the binding.
        self.cross_k, self.cross_v = np.ascontiguousarray(cross_k), np.ascontiguousarray(cross_v)
        self.offset = 0
        self.binding = session.io_binding()
        for name, array in (
            ("in_self_k", self.self_k),
            ("in_self_v", self.self_v),
            ("cross_k", self.cross_k),
            ("cross_v", self.cross_v),
        ):
            # The encoder's outputs keep their type: half precision (CROSS_DTYPE), float32 in older graphs.
            self.binding.bind_input(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)
        self.binding.bind_output("logits", "cpu")  # first: get_outputs() lists outputs in binding order
        for name, array in (("out_self_k", self.self_k), ("out_self_v", self.self_v)):
            self.binding.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)

    def step(self, tokens: list[int]) -> np.ndarray:
        ids = np.asarray([tokens], dtype=np.int64)
        offset = np.asarray([self.offset], dtype=np.int64)
        self.binding.bind_cpu_input("tokens", ids)
        self.binding.bind_cpu_input("offset", offset)
        # Unbound again each call: the logits' length follows the tokens passed, and ORT would otherwise
        # write into the previous call's (pre-allocated) logits and refuse another shape.
        self.binding.bind_output("logits", "cpu")
        self.session.run_with_iobinding(self.binding, self.run_options)
        logits = self.binding.get_outputs()[0].numpy()
        self.offset += len(tokens)
        return logits[0, -1]


# sherpa-onnx's default `tail_paddings` (Python and Kotlin): the zero frames it appends to a clip's features.
CLIENT_TAIL_FRAMES = 1000


def client_frame_counts(n_samples: int, tail_frames: int = CLIENT_TAIL_FRAMES) -> tuple[int, int]:
    """(the clip's own frames, all frames with the zero tail) as sherpa-onnx frames `n_samples` of audio."""
    frames = min(n_samples * FRAMES_PER_SECOND // SAMPLE_RATE, FULL_FRAMES - 50)
    return frames, min(frames + tail_frames, FULL_FRAMES)


def client_features(runner: Runner, window: np.ndarray, tail_frames: int = CLIENT_TAIL_FRAMES) -> np.ndarray:
    """Features framed as sherpa-onnx frames them: the clip's own frames (normalised as in the 30 s window),
    then `tail_frames` zero frames, at most 3000 in all; a short clip's encoder pass is that much shorter."""
    frames, total = client_frame_counts(len(window), tail_frames)
    features = np.zeros((runner.n_mels, total), dtype=np.float32)
    # Only the clip's own frames are transformed (runtimes.audio: the rest of the window is zeros).
    features[:, :frames] = log_mel_frames(window, runner.n_mels, frames)
    return features


class OnnxRunner(Runner):
    name = "onnx"

    def __init__(
        self,
        artifact_dir: str | Path,
        threads: int | None = None,
        adapters: str | Path | None = None,
        memory_arena: bool = False,
        return_freed_memory: bool = True,
        tail_frames: int = CLIENT_TAIL_FRAMES,
    ):
        """`adapters`: a folder with encoder.onnx_adapter / decoder.onnx_adapter for an NF4 + LoRA artifact:
        that user's LoRA parameters replace the ones the graphs carry (one base, many users).
        `memory_arena`: ORT's CPU arena and memory patterns on (ORT's defaults; off: activation memory follows
        the graphs' liveness). `return_freed_memory`: fix glibc's mmap threshold for this process
        (runtimes/allocator.py), so that freed tensors leave the resident set; where the C library is not
        glibc nothing changes."""
        folder = Path(artifact_dir)
        if not folder.is_dir():
            raise EdgeAsrError(f"ONNX artifact folder not found: {folder}")
        # Before the sessions exist, so that loading's own buffers are served the same way.
        self.freed_memory_returned = return_freed_memory and fix_mmap_threshold()
        # Before the sessions too: parsing tokenizer.json peaks near 20 MB, which beside the sessions added
        # that much to the load peak (tiny.en's 25 MB pair: 79.5 MB against 61 for the sessions).
        tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
        self.encoder = runner_session(folder / ENCODER_FILE, threads, memory_arena)
        self.decoder = runner_session(folder / DECODER_FILE, threads, memory_arena)
        self.memory_arena = memory_arena
        try:
            special = SpecialTokens.from_dict(json.loads(_metadata(self.encoder, folder, META_SPECIAL)))
            n_mels = int(_metadata(self.encoder, folder, META_N_MELS))
            # Graphs lowered before the audio context became an option take the full 30 s window.
            n_frames = int(self.encoder.get_modelmeta().custom_metadata_map.get(META_N_FRAMES, FULL_FRAMES))
        except (ValueError, TypeError, KeyError) as exc:
            raise EdgeAsrError(f"{folder / ENCODER_FILE} has malformed edgeasr metadata ({exc})") from exc
        super().__init__(tokenizer, special, n_mels, n_frames)
        self.folder = folder
        # sherpa layout only: the zero frames after a clip's own, as sherpa-onnx's `tail_paddings` (an app's
        # setting; 3000 gives every clip the full 30 s window Whisper was trained on, at more encoder work).
        if not 0 <= tail_frames <= FULL_FRAMES:
            raise EdgeAsrError(f"tail frames must be 0 to {FULL_FRAMES}, not {tail_frames}")
        self.tail_frames = tail_frames
        # Either edgeasr's own pair (fed a full 30 s window) or the one sherpa-onnx loads (fed as sherpa does).
        self.layout = self.encoder.get_modelmeta().custom_metadata_map.get(META_LAYOUT, "edgeasr")
        if self.layout not in ("edgeasr", "sherpa"):
            raise EdgeAsrError(f"{folder / ENCODER_FILE} has an unknown layout {self.layout!r}; update edgeasr")
        self._encoder_input = self.encoder.get_inputs()[0].name
        self.run_options = {"encoder": None, "decoder": None}
        self._adapters = {}  # keeps the LoraAdapter objects the run options point to alive
        if adapters is not None:
            for graph in self.run_options:
                self.run_options[graph], self._adapters[graph] = _adapter_run_options(
                    Path(adapters) / f"{graph}.onnx_adapter"
                )

    def features(self, window: np.ndarray) -> np.ndarray:
        # The sherpa layout is run as its client runs it, so this runner and sherpa-onnx see the same input.
        return client_features(self, window, self.tail_frames) if self.layout == "sherpa" else super().features(window)

    def encode(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cross_k, cross_v = self.encoder.run(
            None, {self._encoder_input: features[None].astype(np.float32)}, self.run_options["encoder"]
        )
        return cross_k, cross_v

    def start_decoder(
        self, encoded: tuple[np.ndarray, np.ndarray]
    ) -> _OnnxDecoderSession | _SherpaLayoutDecoderSession:
        session = _SherpaLayoutDecoderSession if self.layout == "sherpa" else _OnnxDecoderSession
        return session(self.decoder, *encoded, run_options=self.run_options["decoder"])
