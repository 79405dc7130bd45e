"""`edgeasr personalize`: one speaker's clips -> LoRA adapters on the NF4 base -> an adapter folder.

Stages: load the full-precision model and build the NF4 base; choose the clips; label them (manifest
transcripts with --transcripts, else a full-precision model's greedy transcripts: label-free; the labeller is
the model itself or a larger teacher, and a confidence filter drops the clips it was unsure of); inject LoRA
(or load a pre-trained adapter as the starting point); train; write adapter.safetensors + adapter.json
(settings, clips, label mode, loss curve, time and peak memory) into a staging folder renamed into place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from exporter.choices import LABEL_STYLES
from exporter.data import Dataset, Utterance, check_audio, load_dataset
from exporter.io import check_output_folder, staged_dir
from exporter.models import WhisperBundle, load_whisper
from exporter.personalize.base import Nf4Options, nf4_bundle
from exporter.personalize.labels import (
    ConfidenceFilter,
    PseudoLabel,
    example_from_label,
    labelling_language,
    most_confident,
    pseudo_label,
)
from exporter.personalize.lora import (
    AdapterInfo,
    LoraConfig,
    adapter_parameters,
    check_adapter_matches,
    inject_lora,
    load_adapter,
    load_lora_state,
    lora_state,
    save_adapter,
)
from exporter.personalize.train import Example, TrainOptions, make_example, text_tokens, train_lora
from runtimes.audio import load_audio
from runtimes.errors import EdgeAsrError
from runtimes.procmem import peak_rss_bytes, reset_peak_rss
from runtimes.torch_runner import TorchRunner

LABEL_MODES = ("transcripts", "pseudo")


@dataclass(frozen=True)
class PersonalizeOptions:
    model: str = "tiny.en"
    clips: Path | None = None
    labels: str = "pseudo"  # transcripts | pseudo
    speaker: str | None = None
    split: str | None = None
    n_clips: int | None = None
    pretrained: Path | None = None
    lora: LoraConfig | None = None  # None: the defaults, or the pre-trained adapter's settings
    train: TrainOptions = TrainOptions()
    base: Nf4Options = Nf4Options()
    label_style: str = LABEL_STYLES[0]  # how transcripts become training text, see label_text
    teachers: tuple[str, ...] = ()  # the pseudo-labellers (per clip the surest one's label); (): the model itself
    confidence: ConfidenceFilter | None = None  # pseudo-labels only; None keeps every clip

    def validate(self) -> None:
        if self.label_style not in LABEL_STYLES:
            raise EdgeAsrError(f"unknown label style {self.label_style!r}; choose {', '.join(LABEL_STYLES)}")
        if self.labels not in LABEL_MODES:
            raise EdgeAsrError(f"unknown label mode {self.labels!r}; use --transcripts or --pseudo-labels")
        if self.labels == "transcripts" and (self.teachers or self.confidence is not None):
            raise EdgeAsrError("--teacher and the confidence filter apply to --pseudo-labels, not --transcripts")
        if self.confidence is not None:
            self.confidence.validate()
        if self.n_clips is not None and self.n_clips < 1:
            raise EdgeAsrError("--n-clips must be >= 1")
        if self.lora is not None:
            self.lora.validate()
        self.train.validate()
        self.base.validate()


def say(message: str) -> None:
    print(f"[personalize] {message}", file=sys.stderr, flush=True)


def choose_clips(options: PersonalizeOptions) -> Dataset:
    if options.clips is None:
        raise EdgeAsrError("personalize needs --clips (a folder of audio or a manifest)")
    dataset = load_dataset(options.clips)  # an empty folder is an EdgeAsrError naming it
    dataset = dataset.filter(speaker=options.speaker, split=options.split)
    utterances = list(dataset)
    if options.n_clips is not None and len(utterances) > options.n_clips:
        utterances = utterances[: options.n_clips]  # manifest order: the first N clips of the speaker
    if options.labels == "transcripts":
        missing = [u.utt_id for u in utterances if not u.transcript]
        if missing:
            raise EdgeAsrError(
                f"--transcripts was asked but {len(missing)} of {len(utterances)} clips have no "
                f"transcript (e.g. {missing[0]}); give a manifest with a 'transcript' column or "
                "use --pseudo-labels"
            )
    check_audio(utterances)  # decoded now, before the model loads: a corrupt clip fails in a second
    return Dataset(dataset.source, utterances)


def label_text(transcript: str, style: str = "lower", language: str | None = "en") -> str:
    """The training text for a transcript.

    keep        as written;
    lower       all-caps transcripts (AN4 style) lower-cased, others kept: Whisper's tokenizer cuts upper-case
                words into rare pieces, and training on them taught the model to spell words it knew;
    normalized  the scoring tokens (exporter/scoring.py `scoring_tokens`: Whisper's normaliser, numbers as
                digits, spelled letters and digit runs joined): spoken-form references such as
                "M I D W O O D" / "ZERO SIX SEVEN" become "midwood" / "067", the written form Whisper
                produces; the text carries nothing the transcript does not, only its form changes.
    (benchmarks/pqm_pilot.py measures the three.)
    """
    text = transcript.strip()
    if style == "normalized":
        from exporter.scoring import scoring_tokens

        return " ".join(scoring_tokens(text, language))
    if style == "lower" and text.upper() == text and text.lower() != text:
        return text.lower()
    return text


def labelled_examples(bundle: WhisperBundle, utterances: list[Utterance], style: str = "lower") -> list[Example]:
    examples = []
    for u in utterances:
        samples = load_audio(u.audio_path, expected_rate=u.sample_rate)
        text = label_text(u.transcript, style, u.language or "en")
        examples.append(make_example(bundle, u.utt_id, samples, text_tokens(bundle, text), text, u.language))
    return examples


def pseudo_labels(
    teachers: WhisperBundle | list[WhisperBundle],
    student: WhisperBundle,
    utterances: list[Utterance],
    progress: bool = False,
) -> list[tuple[PseudoLabel, Example]]:
    """Each clip's pseudo-label (from the teacher, or the most confident of several) and the student's
    training example made from it."""
    teachers = teachers if isinstance(teachers, list) else [teachers]
    runners = [TorchRunner(t) for t in teachers]
    out = []
    for index, u in enumerate(utterances):
        samples = load_audio(u.audio_path, expected_rate=u.sample_rate)
        language = labelling_language(student, u.language)
        label = most_confident([pseudo_label(t, u.utt_id, samples, language, r) for t, r in zip(teachers, runners)])
        out.append((label, example_from_label(student, samples, label)))
        if progress:
            say(
                f"pseudo-label {index + 1}/{len(utterances)} {u.utt_id} (mean log p {label.avg_logprob:.2f}): {label.text!r}"
            )
    return out


def confident_examples(
    labelled: list[tuple[PseudoLabel, Example]], confidence: ConfidenceFilter | None
) -> tuple[list[Example], list[dict]]:
    """The examples the filter keeps, and a record of the dropped clips with the reason."""
    kept, dropped = [], []
    for label, example in labelled:
        reason = confidence.reason_to_drop(label) if confidence else None
        if reason is None:
            kept.append(example)
        else:
            dropped.append({"utt_id": label.utt_id, "text": label.text, "reason": reason})
    if not kept:
        raise EdgeAsrError(
            f"the confidence filter dropped all {len(labelled)} clips (e.g. {dropped[0]['utt_id']}: "
            f"{dropped[0]['reason']}); give more or cleaner clips, lower --min-logprob, or drop the filter "
            "(--confidence-filter and its thresholds)"
        )
    return kept, dropped


def adapted_model(
    base: WhisperBundle, lora: LoraConfig, seed: int, start: dict | None = None, source: str = "adapter"
) -> WhisperBundle:
    """A copy of the NF4 `base` bundle with fresh (or `start`) LoRA adapters injected. Without encoder
    adapters the (frozen, unmodified) encoder weights are shared with `base` instead of copied: less memory,
    and training reuses encoder outputs cached for the same weights (train.cache_frozen_encoder)."""
    import copy

    from torch import nn

    bundle = copy.copy(base)
    memo = {}
    if "encoder" not in lora.scope:
        # the encoder's weights are shared, not copied: its parameters become frozen views of the caller's
        # tensors (same storage), so freezing them below leaves the caller's model and its flags untouched
        for param in base.model.model.encoder.parameters():
            memo[id(param)] = nn.Parameter(param.detach(), requires_grad=False)
    bundle.model = copy.deepcopy(base.model, memo)
    inject_lora(bundle.model, lora, seed)
    if start is not None:
        load_lora_state(bundle.model, start, source)
    bundle.model.eval()
    return bundle


def load_start(options: PersonalizeOptions) -> tuple[LoraConfig, dict | None, AdapterInfo | None]:
    if options.pretrained is None:
        return options.lora or LoraConfig(), None, None
    state, info = load_adapter(options.pretrained)
    check_adapter_matches(info, options.model, options.base.to_dict(), str(options.pretrained))
    if options.lora is not None and options.lora != info.lora:
        raise EdgeAsrError(
            f"--pretrained-lora {options.pretrained} has LoRA settings {info.lora.to_dict()}, "
            f"which differ from the ones given ({options.lora.to_dict()}); drop --rank/--alpha/"
            "--targets to continue from it"
        )
    return info.lora, state, info


def personalize(options: PersonalizeOptions, out_dir: Path, progress: bool = True) -> dict:
    """Train adapters for one speaker; the finished folder appears at `out_dir` only on success."""
    options.validate()
    out_dir = check_output_folder(out_dir)
    clips = choose_clips(options)
    lora, start, start_info = load_start(options)
    labeller = ",".join(options.teachers) or options.model
    say(
        f"{len(clips)} clips from {clips.source}; labels: "
        + ("manifest transcripts" if options.labels == "transcripts" else f"pseudo-labels from FP {labeller}")
    )
    fp = load_whisper(options.model)
    label_source: dict = {"labels": options.labels}
    if options.labels == "transcripts":
        examples = labelled_examples(fp, list(clips), options.label_style)
    else:
        names = options.teachers or (options.model,)
        teachers = [fp if name == options.model else load_whisper(name) for name in names]
        labelled = pseudo_labels(teachers, fp, list(clips), progress)
        del teachers
        examples, dropped = confident_examples(labelled, options.confidence)
        label_source |= {
            "labeller": labeller,
            "confidence_filter": options.confidence.to_dict() if options.confidence else None,
            "pseudo_labels": [label.to_dict() for label, _ in labelled],
            "dropped": dropped,
        }
        if dropped:
            say(f"confidence filter: {len(dropped)} of {len(labelled)} clips dropped, {len(examples)} kept")
    say(f"building the NF4 base ({options.base.linear_format.name}, embedding {options.base.embedding})")
    base, plan = nf4_bundle(fp, options.base)
    bundle = adapted_model(base, lora, options.train.seed, start, str(options.pretrained))
    del fp
    say(
        f"LoRA rank {lora.rank}, alpha {lora.alpha}, targets {','.join(lora.targets)} in "
        f"{','.join(lora.scope)}" + (f", starting from {options.pretrained}" if start is not None else "")
    )
    reset_peak_rss()

    def show(record: dict) -> None:
        if progress:
            say(f"step {record['step']}/{options.train.steps} loss {record['loss']:.4f} ({record['seconds']:.0f} s)")

    result = train_lora(bundle.model, examples, bundle.special.eot, options.train, show)
    state = lora_state(bundle.model)
    training = {
        **label_source,
        "label_style": options.label_style,
        "clips": [e.utt_id for e in examples],
        "texts": [e.text for e in examples],
        "source": str(clips.source),
        "speaker": options.speaker,
        "options": options.train.to_dict(),
        "pretrained_from": str(options.pretrained) if options.pretrained else None,
        "pretrained_training": start_info.training if start_info else None,
        "curve": result.curve,
        "seconds": result.seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "torch_threads": torch.get_num_threads(),
        "adapter_parameters": adapter_parameters(state),
        "base_plan_bytes": plan.total_bytes,
    }
    info = AdapterInfo(options.model, lora, options.base.to_dict(), training)
    with staged_dir(out_dir) as staging:
        save_adapter(staging, state, info)
    say(f"loss {result.first_loss:.4f} -> {result.last_loss:.4f} in {result.seconds:.0f} s; wrote {out_dir}")
    return info.to_dict()
