"""Per-user LoRA adapters apart from the base ExecuTorch program: one `model.pte` for every user of a base,
one small `adapter.ptd` per user.

ExecuTorch 1.5.1 moves constants tagged at capture into a named-data file (`.ptd`, program-data separation)
that the runtime loads beside the program. But XNNPACK names every constant it stores by the sha256 of its
bytes (backends/xnnpack/operators/node_visitor.py), so a program lowered with user A's adapter asks the data
file for A's contents by hash: user B's file is refused (NotFound) and every user would need a program of
their own (measured in benchmarks/results/et_lora_separation.md). So after lowering:

1. each adapter tensor is found among the `.ptd` entries by its float32 bytes (XNNPACK keeps the Linear
   weights of the LoRA branches as they are; anything else is refused, not guessed at);
2. its content key is replaced, in the program's bytes, by a key made from the tensor's name alone
   (`adapter_key`): same length, so the delegate blob's flatbuffer stays valid; each old key must occur
   exactly once, which is checked;
3. the `.ptd` is written by edgeasr from the adapter's state dict under those keys (`write_adapter_file`), the
   same code that writes another user's file for an existing program later.

The program carries the contract as a constant method (`edgeasr_adapter`: per tensor its name, key and
shape; the LoRA settings; the base). An adapter file carries, as one more named entry, what it was
made for (the sha256 of the program) and the sha256 of each tensor; runtimes/pte_adapter.py checks both before
ExecuTorch sees the file, so a file for another base, another rank or a damaged file is refused whole.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from exporter.io import atomic_path
from runtimes.contract import PTE_ADAPTER
from runtimes.errors import EdgeAsrError
from runtimes.integrity import sha256_file
from runtimes.ptd import read_ptd
from runtimes.pte_adapter import (
    ADAPTER_FORMAT,
    ADAPTER_META_KEY,
    adapter_key,
    read_adapter_file,
)


def _stored_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().to(torch.float32).contiguous().numpy().tobytes()


def contract_tensors(adapter: dict[str, torch.Tensor]) -> dict:
    """Per LoRA tensor (name -> tensor), the key and shape the program will take it under."""
    return {name: {"key": adapter_key(name), "shape": list(t.shape)} for name, t in sorted(adapter.items())}


def stabilise_keys(pte: bytes, ptd: bytes, adapter: dict[str, torch.Tensor]) -> bytes:
    """The program lowered with `adapter` (LoRA parameter name -> tensor), whose tagged constants went to the
    data file `ptd`, with each content key replaced by the tensor's name-derived key."""
    stored = read_ptd(ptd)
    by_bytes = {}
    for name, tensor in adapter.items():
        by_bytes.setdefault(_stored_bytes(tensor), []).append(name)
    if any(len(names) > 1 for names in by_bytes.values()):
        # XNNPACK stores equal tensors once, under one key: one user's equal tensors and another's unequal
        # ones would need different programs. Untrained adapters (B = 0) are the usual cause.
        raise EdgeAsrError(
            "two adapter tensors hold identical values (an untrained adapter, with B = 0?); a per-user adapter "
            "file needs a trained adapter: train it with `edgeasr personalize` or use --lora-pte-mode merged-int8"
        )
    renamed = set()
    for key, data in stored.items():
        names = by_bytes.get(data)
        if names is None:
            raise EdgeAsrError(
                f"the lowered program's data file holds an entry ({len(data)} bytes) that is no adapter tensor as "
                "trained: this executorch stores constants differently; use --lora-pte-mode merged-int8"
            )
        new_key = adapter_key(names[0])
        if len(new_key) != len(key) or pte.count(key.encode()) != 1:
            raise EdgeAsrError(
                f"cannot rename the program's key for {names[0]} (found {pte.count(key.encode())} times, expected "
                "once); use --lora-pte-mode merged-int8"
            )
        pte = pte.replace(key.encode(), new_key.encode())
        renamed.add(names[0])
    missing = sorted(set(adapter) - renamed)
    if missing:
        raise EdgeAsrError(f"adapter tensors not in the program's data file: {', '.join(missing[:3])}")
    return pte


def _as_json(value):
    return json.loads(json.dumps(value, sort_keys=True))  # tuples become lists, as read back from the program


def _program_fields(info: dict) -> dict:
    """What of an adapter's record shapes the base program: the model, the NF4 base, and the LoRA settings
    the graph is built from (dropout only acts in training: adapters that differ in it share a program)."""
    lora = {key: info["lora"][key] for key in ("rank", "alpha", "targets", "scope")}
    return _as_json({"model_id": info["model_id"], "base": info["base"], "lora": lora})


def adapter_contract(tensors: dict, lora_info: dict, pte_mode: str) -> dict:
    """What the base program says about the adapter files it takes (its `edgeasr_adapter` constant)."""
    return {"format": ADAPTER_FORMAT, **_program_fields(lora_info), "pte_mode": pte_mode, "tensors": tensors}


def write_adapter_file(
    pte_path: Path, contract: dict, state: dict[str, torch.Tensor], info: dict, out_path: Path
) -> Path:
    """Write one user's adapter file for the program at `pte_path` (whose `contract` says which tensors it
    takes), from that user's LoRA state dict. `info` is the adapter's own record (model_id, lora, base): it
    must match the program's, and so must every tensor's shape; nothing is written otherwise."""
    # ExecuTorch exposes its .ptd writer only through these (private-path) types; pinned executorch==1.5.1
    from executorch.exir._serialize.data_serializer import DataEntry, DataPayload
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    fields = _program_fields(info)
    for field, value in fields.items():
        if value != contract[field]:
            raise EdgeAsrError(
                f"the adapter's {field} ({json.dumps(value, sort_keys=True)}) is not the one the base program "
                f"was exported for ({json.dumps(contract[field], sort_keys=True)}): export a base program for "
                "this adapter with `edgeasr export --lora`"
            )
    names = contract["tensors"]
    extra, missing = sorted(set(state) - set(names)), sorted(set(names) - set(state))
    if extra or missing:
        raise EdgeAsrError(
            f"the adapter's tensors do not match the base program's (missing {', '.join(missing[:3]) or '-'}; "
            f"not in the program {', '.join(extra[:3]) or '-'}): another rank or other targets?"
        )
    buffers, entries, digests = [], {}, {}
    for name, spec in names.items():
        if list(state[name].shape) != spec["shape"]:
            raise EdgeAsrError(
                f"adapter tensor {name} has shape {list(state[name].shape)}, the base program takes {spec['shape']}"
            )
        if not state[name].is_floating_point() or not torch.isfinite(state[name]).all():
            raise EdgeAsrError(f"adapter tensor {name} is not finite floating-point data (a corrupt adapter?)")
        data = _stored_bytes(state[name])
        digests[spec["key"]] = hashlib.sha256(data).hexdigest()
        entries[spec["key"]] = DataEntry(buffer_index=len(buffers), alignment=16, tensor_layout=None)
        buffers.append(data)
    record = {
        "format": ADAPTER_FORMAT,
        "program_sha256": sha256_file(pte_path),
        "model_id": fields["model_id"],
        "lora": fields["lora"],
        "sha256": digests,
    }
    entries[ADAPTER_META_KEY] = DataEntry(buffer_index=len(buffers), alignment=16, tensor_layout=None)
    buffers.append(json.dumps(record, sort_keys=True).encode())
    blob = bytes(FlatTensorSerializer().serialize(DataPayload(buffers=buffers, named_data=entries)))
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(blob)
    read_adapter_file(out_path, pte_path)  # what the runner will check, checked on what was written
    return out_path


def lower_with_adapter_file(
    bundle, plan, pte_path: Path, adapter_path: Path, lora_info: dict, pte_mode: str, layout: str = "edgeasr"
) -> tuple[Path, Path]:
    """Lower `bundle` (a model with float LoRA branches) per `plan` into a base program at `pte_path` that
    holds no adapter values, and this user's adapter file at `adapter_path`. `layout`: the methods' layout
    (exporter/lower/executorch.py); "runner" is the one ExecuTorch's Android AsrModule loads, and it takes
    the adapter file as its `dataPath`."""
    from exporter.lower.executorch import (
        ADAPTER_TAG,
        capture,
        constant_methods,
        lower,
        prepare_model,
        quantize_model,
    )
    from exporter.personalize.lora import lora_state

    model = prepare_model(bundle, plan)
    quantize_model(model, plan)
    adapter = lora_state(model)
    if not adapter:
        raise EdgeAsrError("the model carries no LoRA adapters to keep apart")
    contract = adapter_contract(contract_tensors(adapter), lora_info, pte_mode)
    constants = constant_methods(bundle, plan, layout=layout) | {PTE_ADAPTER: json.dumps(contract, sort_keys=True)}
    data, files = lower(capture(model, bundle.n_mels, layout=layout, adapter_apart=True), constants)
    if set(files) != {f"{ADAPTER_TAG}.ptd"}:
        raise EdgeAsrError(f"ExecuTorch wrote data files {sorted(files)}, expected one {ADAPTER_TAG}.ptd")
    data = stabilise_keys(data, files[f"{ADAPTER_TAG}.ptd"], adapter)
    with atomic_path(pte_path) as tmp:
        tmp.write_bytes(data)
    write_adapter_file(pte_path, contract, adapter, lora_info, adapter_path)
    return pte_path, adapter_path
