"""Can one ExecuTorch program serve many users' LoRA adapters through program-data separation (.ptd)?

A toy Linear(512, 512) with an int8 (8da8w, torchao) base and a rank-8 float LoRA branch, lowered to XNNPACK
twice: user 1 and user 2 differ only in their adapter. Constants are tagged with ExecuTorch's
`delegate_external_constants_pass_unlifted` into a `.ptd` file, in two layouts:

  lora-external        the LoRA weights in lora.ptd, the rest in the .pte: can user 2's lora.ptd run with
                       user 1's .pte?
  foundation-external  everything but the LoRA weights tagged for foundation.ptd: is foundation.ptd the same
                       for both users, and how many bytes of the base does it really take out of the .pte?

Writes benchmarks/results/et_lora_separation.json|md. Seconds to run; no model download.

    python benchmarks/et_lora_separation.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import copy  # noqa: E402
from collections import OrderedDict  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from exporter.io import write_json, write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DIM, RANK = 512, 8


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.base = nn.Linear(DIM, DIM)
        self.lora_a = nn.Parameter(torch.randn(RANK, DIM) * 0.05)
        self.lora_b = nn.Parameter(torch.randn(DIM, RANK) * 0.05)

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b)


def quantized_users() -> tuple[nn.Module, nn.Module]:
    from torchao.quantization import FqnToConfig, Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    torch.manual_seed(0)
    user1 = Toy().eval()
    config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    quantize_(user1, FqnToConfig(OrderedDict([("base", config)])), filter_fn=None)
    user2 = copy.deepcopy(user1)
    with torch.no_grad():
        user2.lora_b.mul_(-1.0)
    return user1, user2


def lower(model: nn.Module, example: torch.Tensor, tag, folder: Path) -> dict[str, int]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.external_constants_pass import delegate_external_constants_pass_unlifted

    folder.mkdir(parents=True, exist_ok=True)
    unlifted = torch.export.export(model, (example,), strict=False).module()
    delegate_external_constants_pass_unlifted(unlifted, tag)
    edge = to_edge_transform_and_lower(
        torch.export.export(unlifted, (example,), strict=False),
        partitioner=[XnnpackPartitioner()],
        compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True),
    )
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=True))
    (folder / "model.pte").write_bytes(program.buffer)
    program.write_tensor_data_to_file(str(folder))
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def run(pte: Path, ptd: Path, example: torch.Tensor):
    from executorch.runtime import Runtime

    try:
        program = Runtime.get().load_program(str(pte), data_path=str(ptd))
        return program.load_method("forward").execute((example,))[0], None
    except Exception as exc:  # the runtime raises RuntimeError with an error code: record it
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def main() -> None:
    user1, user2 = quantized_users()
    example = torch.randn(1, 4, DIM)
    expected = {1: user1(example), 2: user2(example)}
    layouts = {
        "lora-external": lambda n: "lora" if "lora" in n.name else None,
        "foundation-external": lambda n: None if "lora" in n.name else "foundation",
    }
    result = {"dim": DIM, "rank": RANK, "base": "8da8w per channel (torchao) on XNNPACK", "layouts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tag in layouts.items():
            files = {u: lower(m, example, tag, Path(tmp) / name / f"user{u}") for u, m in ((1, user1), (2, user2))}
            ptd = "lora.ptd" if name == "lora-external" else "foundation.ptd"
            folder = Path(tmp) / name
            same_ptd = (folder / "user1" / ptd).read_bytes() == (folder / "user2" / ptd).read_bytes()
            same_pte = (folder / "user1" / "model.pte").read_bytes() == (folder / "user2" / "model.pte").read_bytes()
            if name == "lora-external":  # user 1's program with user 2's adapter file
                out, error = run(folder / "user1" / "model.pte", folder / "user2" / ptd, example)
            else:  # user 2's program with user 1's (shared) foundation file
                out, error = run(folder / "user2" / "model.pte", folder / "user1" / ptd, example)
            entry = {
                "files_user1": files[1],
                "files_user2": files[2],
                "same_pte": same_pte,
                "same_ptd": same_ptd,
                "cross_run_error": error,
            }
            if out is not None:
                entry["cross_run_max_abs_error_vs_user2"] = float((out - expected[2]).abs().max())
                entry["cross_run_max_abs_diff_vs_user1"] = float((out - expected[1]).abs().max())
            result["layouts"][name] = entry
    write_json(RESULTS / "et_lora_separation.json", result)
    lines = [
        "# ExecuTorch program-data separation for per-user LoRA (toy)",
        "",
        "Produced by `python benchmarks/et_lora_separation.py`: Linear(512, 512), int8 per-channel base "
        "(8da8w) plus a rank-8 float LoRA branch, XNNPACK; two users differ only in the adapter.",
        "",
        "| layout | files (user 1, bytes) | .pte same for both users | .ptd same | cross run | "
        "max abs error vs user 2 |",
        "|---|---|---|---|---|---:|",
    ]
    for name, e in result["layouts"].items():
        cross = "user 1 .pte + user 2 lora.ptd" if name == "lora-external" else "user 2 .pte + user 1 foundation.ptd"
        outcome = e["cross_run_error"] or "ran"
        err = e.get("cross_run_max_abs_error_vs_user2")
        lines.append(
            f"| {name} | {e['files_user1']} | {e['same_pte']} | {e['same_ptd']} | {cross}: {outcome} | "
            f"{'-' if err is None else f'{err:.2g}'} |"
        )
    write_text(RESULTS / "et_lora_separation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
