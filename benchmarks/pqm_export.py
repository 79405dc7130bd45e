"""NF4 + LoRA exported: does each artifact reproduce the PyTorch model the adapter was trained as?

For one AN4 train speaker: train adapters on its first 8 clips (`edgeasr personalize` defaults, labels), then
export through `edgeasr export --lora` to ONNX (MatMulBnb4 + LoRA inputs) and to ExecuTorch in every
--lora-pte-mode (XNNPACK has no NF4). Per artifact: file bytes, lowering seconds, and on the speaker's held-out
clips plus the AN4 test split (agreement needs no labels, so other speakers count too): the share of
transcripts identical to the PyTorch NF4 + LoRA model's, the WER of the artifact's transcripts against the
PyTorch ones, first-step logits error, and WER against the references. Resumable per artifact; writes
benchmarks/results/pqm_export_<model>.json|md.

    python benchmarks/pqm_export.py --model tiny.en --speaker fash
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from exporter.data import load_dataset  # noqa: E402
from exporter.export import ExportOptions, export, first_logits  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.normalize import normalize  # noqa: E402
from exporter.personalize.base import nf4_plan  # noqa: E402
from exporter.personalize.lora import load_adapter  # noqa: E402
from exporter.personalize.run import PersonalizeOptions, adapted_model, personalize  # noqa: E402
from exporter.quant.simulate import simulate  # noqa: E402
from exporter.scoring import aggregate, count_errors, score  # noqa: E402
from runtimes.artifact import open_artifact  # noqa: E402
from runtimes.audio import load_audio, log_mel  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

AN4 = ROOT.parent / "shared" / "data" / "an4" / "manifest.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
ARTIFACTS = [("onnx", "onnx", None)] + [
    (f"pte {m}", "android", m) for m in ("branch-int8", "branch-int4", "merged-int8", "merged-int4")
]


def say(message: str) -> None:
    print(f"[pqm-export] {message}", flush=True)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def write_report(path: Path, data: dict) -> None:
    write_json(path, data)
    lines = [
        f"# NF4 + LoRA export parity ({data['model']}, speaker {data['speaker']})",
        "",
        "Produced by `python benchmarks/pqm_export.py`. Adapters: `edgeasr personalize` defaults on the "
        f"speaker's first 8 clips with labels ({data['adapter']}). Agreement clips: the speaker's held-out "
        f"clips plus the AN4 test split ({data['n_clips']} clips); reference = the PyTorch NF4 + LoRA model "
        "(simulated NF4 base + float LoRA), the model the adapter was trained as.",
        "",
        f"PyTorch NF4 + LoRA WER on these clips: {_pct(data['reference_wer'])} %.",
        "",
        f"`edgeasr personalize` for this adapter: {data['personalize']['adapter_parameters']:,} LoRA parameters, "
        f"training {data['personalize']['seconds']:.0f} s on {data['personalize']['torch_threads']} thread(s), "
        f"peak RSS during training {data['personalize']['peak_rss_bytes'] / 1e6:.0f} MB (the whole process: "
        "FP model released, NF4 base and its LoRA copy loaded).",
        "",
        "| artifact | bytes (no tokenizer) | identical transcripts | WER vs PyTorch | logits rel. err | "
        "within export tolerances | WER vs refs % | export s |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, _, _ in ARTIFACTS:
        r = data["artifacts"].get(name)
        if r:
            lines.append(
                f"| {name} | {r['bytes']:,} | {r['identical']}/{r['clips']} | {r['wer_vs_torch']:.3f} | "
                f"{r['logits_rel_err']:.2g} | {'yes' if r['passes_export_tolerances'] else 'no'} | "
                f"{_pct(r['wer'])} | {r['seconds']:.0f} |"
            )
    lines += ["", f"Machine: {data['machine']}."]
    write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--speaker", default="fash")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgeasr-pqm-export"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = RESULTS / f"pqm_export_{args.model}.json"
    data = (
        json.loads(out.read_text()) if out.exists() else {"model": args.model, "speaker": args.speaker, "artifacts": {}}
    )
    data["machine"] = f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs, torch {torch.__version__}"
    work = args.work / args.model
    work.mkdir(parents=True, exist_ok=True)
    an4 = load_dataset(AN4)
    speaker_utts = [u for u in an4 if u.speaker == args.speaker]
    clips = speaker_utts[8:] + [u for u in an4 if u.split == "test"]
    adapter = work / f"adapter_{args.speaker}"
    if not adapter.is_dir():
        personalize(
            PersonalizeOptions(model=args.model, clips=AN4, labels="transcripts", speaker=args.speaker, n_clips=8),
            adapter,
        )
    data["adapter"] = str(adapter)
    data["n_clips"] = len(clips)
    data["personalize"] = {
        k: load_adapter(adapter)[1].training[k]
        for k in ("seconds", "peak_rss_bytes", "torch_threads", "adapter_parameters")
    }

    fp = load_whisper(args.model)
    state, info = load_adapter(adapter)
    reference = TorchRunner(simulate(adapted_model(fp, info.lora, 0, state), nf4_plan(fp)))
    samples = [load_audio(u.audio_path, expected_rate=u.sample_rate) for u in clips]
    ref_texts = [reference.transcribe(s).text for s in samples]
    refs = [u.transcript for u in clips]
    data["reference_wer"] = aggregate([count_errors(r, h) for r, h in zip(refs, ref_texts)]).wer
    calib = work / "calib"  # the speaker's adaptation clips: export's own parity check runs on them
    if not calib.is_dir():
        calib.mkdir()
        for u in speaker_utts[:8]:
            (calib / u.audio_path.name).symlink_to(u.audio_path)
    for name, target, mode in ARTIFACTS:
        if name in data["artifacts"]:
            continue
        folder = work / name.replace(" ", "_")
        if folder.exists():
            shutil.rmtree(folder)
        say(f"exporting {name}")
        started = time.perf_counter()
        summary = export(
            ExportOptions(
                model=args.model,
                target=target,
                budget="200MB",
                calib=calib,
                lora=adapter,
                lora_pte_mode=mode or "branch-int8",
                max_transcript_wer=1.0,
                max_logits_error=10.0,
            ),
            folder,
            progress=False,
        )
        seconds = time.perf_counter() - started
        runner = open_artifact(folder)
        texts = [runner.transcribe(s).text for s in samples]
        features = log_mel(samples[0], reference.n_mels)
        ref_logits = first_logits(reference, features)
        logits_err = float(np.abs(first_logits(runner, features) - ref_logits).max() / np.abs(ref_logits).max())
        data["artifacts"][name] = {
            "bytes": summary["artifacts"][0]["artifact_bytes"],
            "seconds": seconds,
            "clips": len(clips),
            "identical": sum(normalize(a) == normalize(b) for a, b in zip(texts, ref_texts)),
            "wer_vs_torch": score(ref_texts, texts).wer or 0.0,
            "logits_rel_err": logits_err,
            "wer": aggregate([count_errors(r, h) for r, h in zip(refs, texts)]).wer,
            "export_parity": summary["artifacts"][0]["parity"]["transcript_disagreement"],
        }
        defaults = ExportOptions()
        data["artifacts"][name]["passes_export_tolerances"] = bool(
            data["artifacts"][name]["wer_vs_torch"] <= defaults.max_transcript_wer
            and logits_err <= defaults.max_logits_error
        )
        write_report(out, data)
        say(f"{name}: {data['artifacts'][name]}")
    say(f"done: {out}")


if __name__ == "__main__":
    main()
