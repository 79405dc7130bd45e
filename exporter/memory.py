"""Runtime memory model: how much RAM an exported Whisper needs while loading and while running.

Weights are not the whole story: on a 30 s window the encoder's attention maps (heads x 1500^2 x 4 bytes per
map) dwarf a quantised tiny model's weights. An estimate has these terms, in bytes:

  weights      the packed weights the runtime keeps resident: the artifact's bytes (the plan's weight bytes
               before lowering); ONNX: plus the float32 copies of half initializers, which ORT widens.
               ExecuTorch's C++ Module maps the .pte (the Android demo and edgeasr's native worker load it
               with LOAD_MODE_MMAP, no mlock): XNNPACK copies its delegates' weights into packed buffers and
               the mapped pages are released, but the token-embedding lookup table, run outside XNNPACK, is
               read in place, only the rows decoded: hosts android and native leave it out;
  activations  activation memory the runtime plans:
               ExecuTorch: the lowered program's memory plan (`non_const_buffer_sizes`, read from the .pte).
                 The Python runtime gives all host methods ONE shared arena sized to the largest method;
                 ExecuTorch's C++ Module (what the Android app uses) gives every method its own arena
                 (a zero-filled std::vector per planned buffer in `Module::load_method`), so there it is the
                 sum. Both allocate and zero the arenas while loading. The plan holds the decoder's
                 self-attention KV cache (mutable buffers written in place). The encoder's outputs, the
                 cross-attention keys and values, are in the encoder's plan; the Python runner and the
                 Android demo copy them out and hold the copy while decoding, so there they are added as KV
                 cache; edgeasr's native worker (host native) passes them to the decoder in place;
               ONNX Runtime: a liveness pass over each graph with inferred shapes (tensors allocated when
                 produced, freed after their last use, reshapes aliasing their input), one peak per graph:
                 the encoder's with its outputs (the cross-attention keys and values, written by its last
                 nodes), the decoder's at the last position;
  workspace    memory outside the plan that the first run allocates. ExecuTorch: XNNPACK's workspace for
               tensors inside delegated subgraphs (one attention map and ~6 hidden-state tensors) plus a
               constant the runtime allocates on the first run. ONNX Runtime: none modelled;
  kv_cache     self-attention cache at the longest sequence (2 x layers x 448 x d_model x 4) and the cross-
               attention keys/values (2 x layers x positions x d_model x 4; x 2 in the ONNX pair, whose
               encoder writes them in half precision); the part already inside `activations` (ExecuTorch's
               self-attention cache) is reported, not added twice;
  features     the log-mel computation of one window (numpy, float64 STFT of 30 s of audio);
  load transient  held only while loading: XNNPACK packs each delegate's weights while the serialised copy
               still exists, so the load peak exceeds the steady state by about the largest layer.

  load peak = weights + load transient (+ the arenas, which ExecuTorch allocates and zeroes while loading)
  run peak  = weights + activations + workspace + features + kv_cache not inside activations

ONNX Runtime's sessions allocate as they run, so a run is three phases that never overlap: the log-mel
(features), the encoder (its live peak with its outputs), then decoding (the decoder's live peak at the last
position plus the whole KV cache). Its run peak is the weights plus the largest phase (`run_phases`); adding
every term, as for ExecuTorch's arenas that are all allocated at load, predicted 228 MB for base's 46 MB pair,
measured 133-136 MB on short clips (the phase model: 175 MB at 30 s and 448 tokens, each phase measured alone
in benchmarks/results/onnx_memory_base.md).

The structural counts (3 attention maps planned with sdpa attention, 2 with eager; the decoder plan at 1.04x
the self-attention cache; ExecuTorch's first-run constant of 42 MB with eager or sdpa attention; ONNX Runtime keeping about twice the file
bytes after loading) were read off memory plans and /proc measurements of tiny.en and base exports on x86-64
Linux (ExecuTorch 1.5.1, ONNX Runtime 1.31.1; benchmarks/results/memory_*.json compares prediction and
measurement). `predict_before_lowering` uses them to choose controls before the expensive lowering;
`estimate_artifact` replaces the planned terms by what the artifact really holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exporter.lower.settings import DEFAULT_ATTENTION, QUERY_CHUNKS
from runtimes.audio import FULL_FRAMES
from runtimes.contract import (
    DECODER_FILE,
    ENCODER_FILE,
    META_LAYOUT,
    META_N_FRAMES,
    PTE_FILE,
    TFLITE_DECODER_FILE,
    TFLITE_ENCODER_FILE,
)
from runtimes.errors import EdgeAsrError

MAX_POSITIONS = 448  # Whisper's text context: the self-attention cache length of every lowering
FLOAT_BYTES = 4
MB = 10**6

# Read off the ExecuTorch memory plans of tiny.en and base (sdpa 171.2 / 228.3 MB = 3 maps + 4 hidden
# states; eager 117.2 MB = 2 maps + 4 hidden states). Decoder: 5.7 / 11.2 MB = 1.04 / 1.02 x the self-
# attention cache since its in-place writes share their buffers' storage (exporter/lower/memory_planning.py;
# 2.04 / 2.02 x before, 3.26 / 3.17 x before the decoder took precomputed cross keys/values).
ET_PLANNED_MAPS = {"sdpa": 3, "eager": 2, "chunked": 0}
ET_PLANNED_HIDDEN = 4
# Chunked attention (exporter/lower/whisper_modules.py) keeps every attention map inside XNNPACK: the plan holds
# hidden states only: the encoder's outputs (each decoder layer's cross-attention keys and values, hidden-state
# sized) and the last layer's output they are projected from (tiny.en's plan 20.7 MB = 9 hidden states; with
# the outputs copied twice after projection, 36.9 MB).
ET_CHUNKED_HIDDEN_BESIDE_OUTPUTS = 1
ET_DECODER_PLAN_PER_SELF_CACHE = 1.04
# XNNPACK workspace and first-run allocations, fitted to the run-peak increase of tiny.en (1000 and 3000
# frames) and base (3000 frames) with eager and sdpa attention: 1 attention map + 6 hidden states + 42 MB,
# each within 1 MB. Chunked attention, its delegates in program order (exporter/lower/program_order.py): one
# slice's scores and probabilities at a time (2 / QUERY_CHUNKS of a map) and no constant: the 42 MB was the
# breadth-first order's four other slices alive at once (tiny.en: 67.7 -> 29.9 MB of live tensors in an
# attention delegate by a liveness count; the worker's run peak above its open state 75.6 -> 38.2 MB, and
# 2/5 map + 6 hidden states predicts 35.4).
ET_WORKSPACE_MAPS = {"sdpa": 1.0, "eager": 1.0, "chunked": 2.0 / QUERY_CHUNKS}
ET_WORKSPACE_HIDDEN = 6
ET_FIRST_RUN_BYTES = {"sdpa": 42 * MB, "eager": 42 * MB, "chunked": 0}
# ONNX Runtime keeps the model's tensors after building a session and reads the file besides: about 2x.
ORT_LOAD_FACTOR = 2.0
# ORT's CPU memory arena and memory patterns hold more than the live tensors (freed blocks kept, growth in
# large steps, a block per input-shape set). edgeasr's runner turns both off; with them on, base's 46 MB pair
# ran 69-93 MB higher (benchmarks/results/onnx_memory_base.md). Not modelled: factor 1.
ORT_ARENA_FACTOR = 1.0
# Encoder liveness peak: attention scores and softmax output of one layer plus two hidden states.
ORT_ENCODER_MAPS = 2
ORT_ENCODER_HIDDEN = 2
# LiteRT (structural, not yet fitted to measurements): the mapped .tflite files plus XNNPACK's repacked copy
# of the quantised weights; the interpreter's arena holds about one encoder layer's attention maps and a few
# hidden states; the decoder's inputs hold the self-attention cache and the cross-attention keys and values,
# which the runner also keeps as the encoder's outputs.
LITERT_LOAD_FACTOR = 2.0
LITERT_ENCODER_MAPS = 1
LITERT_ENCODER_HIDDEN = 4
# The ONNX pair's cross-attention keys and values are half precision (exporter/lower/onnx.py, CROSS_DTYPE);
# pairs lowered before that hold float32 ones, which estimate_onnx reads off the decoder's input.
ORT_CROSS_BYTES = 2
FEATURES_BYTES = 14 * MB  # log-mel of one 30 s window: runtimes.audio.log_mel peaked 11.9-13.9 MB (onnx_memory.py)

RUNTIMES = ("executorch", "onnx", "litert")
# python: ExecuTorch's Python runtime / ORT on the host; android: the Android demo (ExecuTorch's C++ Module,
# the .pte mapped, the encoder's outputs copied); native: edgeasr's C++ worker (runtime executorch-native:
# the same Module, the encoder's outputs read in place)
HOSTS = ("python", "android", "native")


@dataclass(frozen=True)
class WhisperShape:
    """What the memory model needs from a Whisper config."""

    d_model: int
    encoder_heads: int
    encoder_layers: int
    decoder_layers: int

    @classmethod
    def from_config(cls, config) -> WhisperShape:
        return cls(config.d_model, config.encoder_attention_heads, config.encoder_layers, config.decoder_layers)

    def positions(self, n_frames: int) -> int:
        return n_frames // 2  # the encoder's second convolution has stride 2

    def attention_map_bytes(self, n_frames: int) -> int:
        p = self.positions(n_frames)
        return self.encoder_heads * p * p * FLOAT_BYTES

    def hidden_bytes(self, n_frames: int) -> int:
        return self.positions(n_frames) * self.d_model * FLOAT_BYTES


def self_cache_bytes(shape: WhisperShape, max_positions: int = MAX_POSITIONS) -> int:
    """Keys and values of every decoder layer's self-attention at `max_positions` tokens."""
    return 2 * shape.decoder_layers * max_positions * shape.d_model * FLOAT_BYTES


def cross_cache_bytes(shape: WhisperShape, n_frames: int = FULL_FRAMES, value_bytes: int = FLOAT_BYTES) -> int:
    """Keys and values of every decoder layer's cross-attention over the encoder positions."""
    return 2 * shape.decoder_layers * shape.positions(n_frames) * shape.d_model * value_bytes


def kv_cache_bytes(
    shape: WhisperShape,
    n_frames: int = FULL_FRAMES,
    max_positions: int = MAX_POSITIONS,
    cross_value_bytes: int = FLOAT_BYTES,
) -> int:
    return self_cache_bytes(shape, max_positions) + cross_cache_bytes(shape, n_frames, cross_value_bytes)


@dataclass
class MemoryEstimate:
    runtime: str  # executorch | onnx
    host: str  # one of HOSTS
    n_frames: int
    attention: str
    weights_bytes: int
    activation_bytes: int
    workspace_bytes: int
    kv_cache_bytes: int
    kv_in_activations_bytes: int  # the part of kv_cache_bytes already counted in activation_bytes
    features_bytes: int
    load_transient_bytes: int
    arena_at_load: bool  # the runtime allocates (and touches) the planned arena while loading
    source: str  # where `activation_bytes` comes from
    detail: dict = field(default_factory=dict)  # per-method / per-graph numbers behind the terms
    # A run in sequential phases (ONNX Runtime): the bytes each phase holds above the weights and workspace.
    # Empty: every term is live at once (ExecuTorch, LiteRT: their arenas are allocated at load).
    run_phases: dict[str, int] = field(default_factory=dict)

    @property
    def load_peak_bytes(self) -> int:
        arena = self.activation_bytes if self.arena_at_load else 0
        return self.weights_bytes + self.load_transient_bytes + arena

    @property
    def run_peak_bytes(self) -> int:
        if self.run_phases:
            return self.weights_bytes + self.workspace_bytes + max(self.run_phases.values())
        kv = self.kv_cache_bytes - self.kv_in_activations_bytes
        return self.weights_bytes + self.activation_bytes + self.workspace_bytes + self.features_bytes + kv

    @property
    def peak_bytes(self) -> int:
        return max(self.load_peak_bytes, self.run_peak_bytes)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            load_peak_bytes=self.load_peak_bytes, run_peak_bytes=self.run_peak_bytes, peak_bytes=self.peak_bytes
        )
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MemoryEstimate:
        names = {f for f in cls.__dataclass_fields__}
        if "kv_in_activations" in data and "kv_in_activations_bytes" not in data:  # written before 0.1.1
            data = {**data, "kv_in_activations_bytes": data["kv_cache_bytes"] if data["kv_in_activations"] else 0}
        return cls(**{k: v for k, v in data.items() if k in names})


def model_config(model_id: str):
    """The Whisper config of a bundled name, local folder or hub id, without loading the weights."""
    from transformers import WhisperConfig

    from exporter.models import resolve_model_folder

    try:
        return WhisperConfig.from_pretrained(resolve_model_folder(model_id))
    except OSError as exc:
        raise EdgeAsrError(f"cannot read the config of model {model_id!r}: {str(exc).splitlines()[0]}") from exc


def _check(runtime: str, host: str, attention: str) -> None:
    if runtime not in RUNTIMES:
        raise EdgeAsrError(f"no memory model for runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if host not in HOSTS:
        raise EdgeAsrError(f"unknown host {host!r}; choose one of {', '.join(HOSTS)}")
    if runtime == "executorch" and attention not in ET_PLANNED_MAPS:
        raise EdgeAsrError(f"unknown attention {attention!r}; choose one of {', '.join(ET_PLANNED_MAPS)}")


def _arena(per_method: dict[str, int], host: str) -> int:
    """The Python runtime shares one arena among the methods; the C++ Module gives each its own."""
    return max(per_method.values()) if host == "python" else sum(per_method.values())


def _executorch_estimate(
    shape: WhisperShape,
    weights: int,
    largest_layer: int,
    n_frames: int,
    attention: str,
    host: str,
    per_method: dict[str, int],
    source: str,
    lookup_bytes: int = 0,
) -> MemoryEstimate:
    """`weights`: the program's bytes; `lookup_bytes`: the part of them that the embedding lookups read
    in place (resident only where the runtime holds the whole program: host python)."""
    workspace = (
        int(ET_WORKSPACE_MAPS[attention] * shape.attention_map_bytes(n_frames))
        + ET_WORKSPACE_HIDDEN * shape.hidden_bytes(n_frames)
        + ET_FIRST_RUN_BYTES[attention]
    )
    return MemoryEstimate(
        runtime="executorch",
        host=host,
        n_frames=n_frames,
        attention=attention,
        weights_bytes=weights if host == "python" else weights - lookup_bytes,
        activation_bytes=_arena(per_method, host),
        workspace_bytes=workspace,
        kv_cache_bytes=kv_cache_bytes(shape, n_frames),
        # The self-attention cache is planned; the cross-attention keys and values are the encoder's planned
        # outputs, which only the native worker reads in place.
        kv_in_activations_bytes=kv_cache_bytes(shape, n_frames) if host == "native" else self_cache_bytes(shape),
        features_bytes=FEATURES_BYTES,
        load_transient_bytes=largest_layer,
        arena_at_load=True,
        source=source,
        detail={"planned_arena_per_method": per_method, "lookup_table_bytes": lookup_bytes},
    )


def _onnx_estimate(
    shape: WhisperShape,
    file_bytes: int,
    n_frames: int,
    host: str,
    encoder_peak: int,
    decoder_peak: int,
    source: str,
    memory_arena: bool = False,
    half_bytes: int = 0,
    cross_bytes: int = ORT_CROSS_BYTES,
) -> MemoryEstimate:
    # Half-precision initializers are widened to float32 when the session folds their Casts: resident twice.
    resident = int(ORT_LOAD_FACTOR * file_bytes) + half_bytes
    arena = ORT_ARENA_FACTOR if memory_arena else 1.0
    kv = kv_cache_bytes(shape, n_frames, cross_value_bytes=cross_bytes)
    phases = {
        "features": FEATURES_BYTES,
        "encoder": int(encoder_peak * arena),
        "decoder": int(decoder_peak * arena) + kv,
    }
    return MemoryEstimate(
        runtime="onnx",
        host=host,
        n_frames=n_frames,
        attention="explicit",
        weights_bytes=resident,
        activation_bytes=int(max(encoder_peak, decoder_peak) * arena),
        workspace_bytes=0,
        kv_cache_bytes=kv,
        kv_in_activations_bytes=0,
        features_bytes=FEATURES_BYTES,
        load_transient_bytes=0,
        arena_at_load=False,
        source=source,
        detail={
            "file_bytes": file_bytes,
            "encoder_live_peak": encoder_peak,
            "decoder_live_peak": decoder_peak,
            "memory_arena": memory_arena,
            "half_initializer_bytes": half_bytes,
            "cross_value_bytes": cross_bytes,
        },
        run_phases=phases,
    )


def predict_before_lowering(
    config,
    weight_bytes: int,
    largest_layer_bytes: int,
    runtime: str,
    n_frames: int = FULL_FRAMES,
    attention: str = DEFAULT_ATTENTION,
    host: str = "python",
) -> MemoryEstimate:
    """The estimate from the model config and the plan alone (structural counts, see the module doc)."""
    _check(runtime, host, attention)
    shape = WhisperShape.from_config(config)
    if runtime == "executorch":
        outputs = 2 * shape.decoder_layers
        hidden = outputs + ET_CHUNKED_HIDDEN_BESIDE_OUTPUTS if attention == "chunked" else ET_PLANNED_HIDDEN
        per_method = {
            "encoder": ET_PLANNED_MAPS[attention] * shape.attention_map_bytes(n_frames)
            + hidden * shape.hidden_bytes(n_frames),
            "text_decoder": int(ET_DECODER_PLAN_PER_SELF_CACHE * self_cache_bytes(shape)),
        }
        return _executorch_estimate(
            shape,
            weight_bytes,
            largest_layer_bytes,
            n_frames,
            attention,
            host,
            per_method,
            "structural estimate before lowering",
        )
    if runtime == "litert":
        return _litert_estimate(shape, weight_bytes, n_frames, host, "structural estimate before lowering")
    encoder_peak = (
        ORT_ENCODER_MAPS * shape.attention_map_bytes(n_frames)
        + ORT_ENCODER_HIDDEN * shape.hidden_bytes(n_frames)
        + cross_cache_bytes(shape, n_frames, ORT_CROSS_BYTES)  # the encoder's outputs, written by its last nodes
    )
    return _onnx_estimate(shape, weight_bytes, n_frames, host, encoder_peak, 0, "structural estimate before lowering")


def _litert_estimate(shape: WhisperShape, file_bytes: int, n_frames: int, host: str, source: str) -> MemoryEstimate:
    return MemoryEstimate(
        runtime="litert",
        host=host,
        n_frames=n_frames,
        attention="explicit",
        weights_bytes=int(LITERT_LOAD_FACTOR * file_bytes),
        activation_bytes=LITERT_ENCODER_MAPS * shape.attention_map_bytes(n_frames)
        + LITERT_ENCODER_HIDDEN * shape.hidden_bytes(n_frames),
        workspace_bytes=0,
        kv_cache_bytes=kv_cache_bytes(shape, n_frames) + cross_cache_bytes(shape, n_frames),
        kv_in_activations_bytes=0,
        features_bytes=FEATURES_BYTES,
        load_transient_bytes=0,
        arena_at_load=True,
        source=source,
        detail={"file_bytes": file_bytes},
    )


def estimate_litert(folder: Path, config, host: str = "python") -> MemoryEstimate:
    """The structural estimate for `folder/encoder.tflite` + `decoder.tflite`."""
    from runtimes.litert_runner import read_litert_metadata

    folder = Path(folder)
    files = [folder / TFLITE_ENCODER_FILE, folder / TFLITE_DECODER_FILE]
    n_frames = int(read_litert_metadata(files[0])["n_frames"])
    shape = WhisperShape.from_config(config)
    source = "structural estimate from the .tflite sizes (not yet fitted to measurements)"
    return _litert_estimate(shape, sum(f.stat().st_size for f in files), n_frames, host, source)


# ---------------------------------------------------------------------------------------------------------
# From a lowered artifact


def executorch_memory_plan(pte_path: Path) -> dict[str, int]:
    """Planned (non-constant) buffer bytes per method with any, read from the .pte's execution plans."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    try:
        program = deserialize_pte_binary(Path(pte_path).read_bytes()).program
    except Exception as exc:  # flatbuffer errors of every kind: the file is not a readable program
        raise EdgeAsrError(
            f"cannot read the memory plan of {pte_path}: {type(exc).__name__} (corrupt or not an ExecuTorch program?)"
        ) from exc
    # Buffer 0 is reserved (constants); the rest are the planned arenas of that method.
    sizes = {plan.name: sum(plan.non_const_buffer_sizes[1:]) for plan in program.execution_plan}
    return {name: size for name, size in sizes.items() if size}


def _largest_layer(plan: dict) -> int:
    return max((layer["bytes"] for layer in plan["layers"]), default=0)


def estimate_executorch(folder: Path, config, host: str = "python") -> MemoryEstimate:
    """The estimate for `folder/model.pte`, with the program's own memory plan."""
    from runtimes.executorch_runner import read_pte_info

    pte = Path(folder) / PTE_FILE
    info = read_pte_info(pte)
    per_method = executorch_memory_plan(pte)
    return _executorch_estimate(
        WhisperShape.from_config(config),
        pte.stat().st_size,
        _largest_layer(info.plan),
        info.n_frames,
        info.attention,
        host,
        per_method,
        "ExecuTorch memory plan in the .pte",
        _lookup_table_bytes(info.plan),
    )


def _lookup_table_bytes(plan: dict) -> int:
    """The plan's embedding tables: the .pte stores them for its lookup kernels, outside XNNPACK."""
    return sum(layer["bytes"] for layer in plan["layers"] if layer["kind"] == "embedding")


def estimate_onnx(folder: Path, config, host: str = "python", memory_arena: bool = False) -> MemoryEstimate:
    """The estimate for `folder/encoder.onnx` + `decoder.onnx`, with liveness over the graphs' shapes."""
    from exporter.onnx_liveness import live_peak_bytes
    from runtimes.onnx_runner import read_metadata

    folder = Path(folder)
    encoder, decoder = folder / ENCODER_FILE, folder / DECODER_FILE
    metadata = read_metadata(encoder)
    n_frames = int(metadata.get(META_N_FRAMES, FULL_FRAMES))
    if metadata.get(META_LAYOUT) == "sherpa":  # dynamic batch and frames (exporter/lower/onnx_sherpa.py): the most
        dims = {"N": 1, "T": n_frames, "T2": n_frames // 2, "n": 1}
        encoder_peak = live_peak_bytes(encoder, dims)
        # At the last position: every slot but one written, which the decoder's attention reads.
        decoder_peak = live_peak_bytes(decoder, dims, count_outputs=False, data_dim=MAX_POSITIONS - 1)
    else:
        encoder_peak = live_peak_bytes(encoder, {})
        decoder_peak = live_peak_bytes(decoder, {"tokens": 1, "past": MAX_POSITIONS - 1}, count_outputs=False)
    file_bytes = encoder.stat().st_size + decoder.stat().st_size
    import onnx

    graphs = {path: onnx.load(str(path)) for path in (encoder, decoder)}
    half_bytes = sum(_half_initializer_bytes(proto) for proto in graphs.values())
    cross_bytes = _cross_value_bytes(graphs[decoder], decoder)
    return _onnx_estimate(
        WhisperShape.from_config(config),
        file_bytes,
        n_frames,
        host,
        encoder_peak,
        decoder_peak,
        "liveness over the ONNX graphs' inferred shapes",
        memory_arena,
        half_bytes,
        cross_bytes,
    )


def _cross_value_bytes(decoder, path: Path) -> int:
    """Bytes per value of the cross-attention keys the decoder (a loaded ModelProto, read from `path`) takes:
    2 since CROSS_DTYPE, 4 before."""
    import onnx

    graph_input = next((i for i in decoder.graph.input if i.name == "cross_k"), None)
    if graph_input is None:
        raise EdgeAsrError(f"{path} has no cross_k input: not an edgeasr ONNX decoder")
    return onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type).itemsize


def _half_initializer_bytes(proto) -> int:
    import onnx

    return sum(
        2 * math.prod(init.dims) for init in proto.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16
    )


def estimate_artifact(
    folder: Path, runtime: str, config, host: str = "python", onnx_memory_arena: bool = False
) -> MemoryEstimate:
    _check(runtime, host, "sdpa")
    if runtime == "executorch":
        return estimate_executorch(folder, config, host)
    if runtime == "litert":
        return estimate_litert(folder, config, host)
    return estimate_onnx(folder, config, host, onnx_memory_arena)


def format_estimate(estimate: MemoryEstimate) -> list[str]:
    """Markdown table rows (bytes and MB) of one estimate."""

    def row(name: str, value: int, note: str = "") -> str:
        return f"| {name} | {value:,} | {value / MB:.1f} | {note} |"

    inside = estimate.kv_in_activations_bytes
    kv_note = f"{inside / MB:.1f} MB of it inside activations, the rest added" if inside else "added"
    if estimate.run_phases:
        kv_note = "in the decoder phase"
    return [
        "| term | bytes | MB | |",
        "|---|---:|---:|---|",
        row("weights", estimate.weights_bytes),
        row("activations", estimate.activation_bytes, estimate.source),
        row("workspace", estimate.workspace_bytes),
        row("KV cache (self + cross)", estimate.kv_cache_bytes, kv_note),
        row("features", estimate.features_bytes),
        row("load transient", estimate.load_transient_bytes),
        *(row(f"run phase: {name}", value, "above the weights") for name, value in estimate.run_phases.items()),
        row("**load peak**", estimate.load_peak_bytes),
        row("**run peak**", estimate.run_peak_bytes, "weights + the largest phase" if estimate.run_phases else ""),
    ]


__all__ = [
    "MemoryEstimate",
    "WhisperShape",
    "cross_cache_bytes",
    "estimate_artifact",
    "executorch_memory_plan",
    "format_estimate",
    "kv_cache_bytes",
    "predict_before_lowering",
    "self_cache_bytes",
]
