"""Parity: the lowered artifact must transcribe like the plan it was lowered from, simulated in PyTorch.

An export whose runtime computes something other than the plan fails here, before anything is written.
"""

from __future__ import annotations

import numpy as np

from exporter.normalize import normalize
from exporter.scoring import utterance_counts
from runtimes.audio import log_mel_frames
from runtimes.errors import EdgeAsrError


def first_logits(runner, features: np.ndarray) -> np.ndarray:
    session = runner.start_decoder(runner.encode(features))
    return np.asarray(session.step(runner.special.prompt("en" if runner.special.is_multilingual else None)))


def disagreement(references: list[str], hypotheses: list[str]) -> float:
    """Mean over clips of min(1, token errors / reference tokens): one looping transcript counts as one
    wrong clip, not as thousands of insertions."""
    rates = []
    for counts in utterance_counts(references, hypotheses):
        errors, total = counts.errors_and_total("wer")
        rates.append(min(1.0, errors / max(total, 1)))
    return float(np.mean(rates)) if rates else 0.0


def check_parity(artifact, simulated, clips: list[np.ndarray], options, full_precision=None) -> dict:
    """Same clips through the artifact and the simulated plan (runners); raises when they diverge.

    `options` gives the tolerances (`ExportOptions` or anything with its `max_*` fields).

    Two measures: the first decoder step's logits on the first clip (relative max error; float-order
    differences between runtimes flip a few int8 activation codes, so quantised models differ by up to
    ~0.15 here, while a runtime that drops the scales is off by 1e3 and more), and how far the artifact's
    transcripts are from the simulated plan's (per-clip error rate capped at 1, averaged). When they
    diverge and `full_precision` is given, the simulated plan is compared with it too: if the plan itself
    no longer transcribes like the full-precision model, the budget is the problem, not the runtime.
    """
    features = log_mel_frames(clips[0][: simulated.window_samples], simulated.n_mels, simulated.n_frames)
    reference = first_logits(simulated, features)
    logits_error = float(np.abs(first_logits(artifact, features) - reference).max() / np.abs(reference).max())
    rows = []
    for samples in clips:
        a, b = artifact.transcribe(samples).text, simulated.transcribe(samples).text
        rows.append({"artifact": a, "simulated": b, "match": normalize(a) == normalize(b)})
    matching = sum(r["match"] for r in rows)
    agreement = disagreement([r["simulated"] for r in rows], [r["artifact"] for r in rows])
    result = {
        "clips": len(rows),
        "matching": matching,
        "share": matching / len(rows),
        "transcript_disagreement": round(agreement, 4),
        "logits_relative_max_error": round(logits_error, 5),
        "rows": rows,
    }
    if agreement > options.max_transcript_wer or logits_error > options.max_logits_error:
        if full_precision is not None and logits_error <= options.max_logits_error:
            fp_texts = [full_precision.transcribe(samples).text for samples in clips]
            plan_vs_fp = disagreement(fp_texts, [r["simulated"] for r in rows])
            result["simulated_vs_full_precision"] = round(plan_vs_fp, 4)
            if plan_vs_fp > options.max_plan_disagreement:
                raise EdgeAsrError(
                    f"the budget leaves a model that no longer transcribes: at this budget the plan's own "
                    f"transcripts differ from the full-precision model's on {100 * plan_vs_fp:.0f} % of words "
                    f"(per clip, capped), so the runtime's small numerical differences decide the text and "
                    f"parity cannot be checked. Raise the budget (or use --calib clips of the user)"
                )
        raise EdgeAsrError(
            f"parity check failed: the artifact's transcripts differ from the simulated plan's on "
            f"{100 * agreement:.0f} % of words (allowed {100 * options.max_transcript_wer:.0f} %) and its "
            f"first-step logits by {logits_error:.3g} relative (allowed {options.max_logits_error}); the runtime "
            "computes something other than the plan, so no artifact was written. Report this with the plan "
            "(edgeasr plan ... --json)"
        )
    return result


def check_client(client, clips: list[np.ndarray], reference: list[str], options, full_precision=None) -> dict:
    """The same clips through a client runtime (e.g. sherpa-onnx) that runs the artifact with its own
    features and decoding, against edgeasr's runner's transcripts `reference`; raises when they diverge.

    A client computes its own log-mel, so on audio where the quantised model is fragile (a child's voice at a
    tight budget) a few words flip between the two runners although both run the artifact as planned. When
    the client diverges and `full_precision` (the FP model, framed as the artifact) is given, both runners
    are scored against the FP model's transcripts: a client no farther from them than edgeasr's runner is,
    plus the parity tolerance, runs the artifact as intended and passes, with the comparison recorded; a
    client that computes something else (wrong inputs, a missing scale) is far from both and fails.
    """
    rows = []
    for samples, expected in zip(clips, reference):
        text = client.transcribe(samples).text
        rows.append({"client": text, "edgeasr": expected, "match": normalize(text) == normalize(expected)})
    agreement = disagreement(reference, [r["client"] for r in rows])
    matching = sum(r["match"] for r in rows)
    versus_fp = None
    if agreement > options.max_transcript_wer and full_precision is not None:
        fp_texts = [full_precision.transcribe(samples).text for samples in clips]
        versus_fp = {
            "client": round(disagreement(fp_texts, [r["client"] for r in rows]), 4),
            "edgeasr": round(disagreement(fp_texts, reference), 4),
        }
    within_front_end_spread = versus_fp is not None and (
        versus_fp["client"] <= versus_fp["edgeasr"] + options.max_transcript_wer
    )
    if agreement > options.max_transcript_wer and not within_front_end_spread:
        vs_fp = (
            ""
            if versus_fp is None
            else f", and from the full-precision model's on {100 * versus_fp['client']:.0f} % (edgeasr's runner: "
            f"{100 * versus_fp['edgeasr']:.0f} %)"
        )
        raise EdgeAsrError(
            f"{client.name} runs the artifact but its transcripts differ from edgeasr's runner's on "
            f"{100 * agreement:.0f} % of words (allowed {100 * options.max_transcript_wer:.0f} %){vs_fp}, so no "
            "artifact was written. Report this with the plan (edgeasr plan ... --json)"
        )
    extra = {} if versus_fp is None else {"disagreement_with_full_precision": versus_fp}
    return {
        "clips": len(rows),
        "matching": matching,
        "share": matching / len(rows) if rows else 0.0,
        "transcript_disagreement": round(agreement, 4),
        **extra,
        "rows": rows,
    }
