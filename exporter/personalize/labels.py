"""Label-free training targets for PQM: a full-precision model's transcripts, and how sure it was of them.

A pseudo-label is a model's greedy transcript of a clip with two confidence measures, the ones Whisper's own
transcribe loop uses to reject a decode: the mean log-probability of the transcript's tokens (and end of
text) under the model that wrote them, and the gzip compression ratio of the text (a decoder loop repeats
itself and compresses well). A `ConfidenceFilter` drops clips below those thresholds before training, so a
speaker's adapter is not taught the mistakes its labeller was unsure of.

The labeller (teacher) may be a larger model than the one being personalised (base teaching tiny.en, as PQM
taught with larger Whispers). Vocabularies differ between English-only and multilingual Whispers, so a
teacher's text is tokenised again with the student's tokenizer; a model labelling for itself keeps its tokens.
With several labellers, each clip takes the label its labeller was surest of (`most_confident`): two models
err on different clips, and the surer one is more often right.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from exporter.models import WhisperBundle
from exporter.personalize.train import Example, check_one_window, make_example, text_tokens
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import decode_text
from runtimes.torch_runner import TorchRunner


@dataclass(frozen=True)
class PseudoLabel:
    utt_id: str
    text: str
    tokens: list[int]  # the labeller's greedy tokens, prompt and end of text excluded
    language: str
    avg_logprob: float  # mean log p of the tokens and end of text under the labeller
    compression_ratio: float
    labeller: str  # the model that wrote it

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConfidenceFilter:
    """Thresholds a pseudo-label must pass to be trained on; None switches a test off. The defaults are the
    fallback thresholds of openai/whisper's transcribe (logprob_threshold -1.0, compression_ratio 2.4)."""

    min_avg_logprob: float | None = -1.0
    max_compression_ratio: float | None = 2.4

    def validate(self) -> None:
        if self.max_compression_ratio is not None and not self.max_compression_ratio > 0:
            raise EdgeAsrError(f"the compression-ratio limit must be positive, not {self.max_compression_ratio}")
        if self.min_avg_logprob is not None and self.min_avg_logprob > 0:
            raise EdgeAsrError(f"a log-probability threshold is <= 0, not {self.min_avg_logprob}")

    def reason_to_drop(self, label: PseudoLabel) -> str | None:
        if not label.text.strip():
            return "empty transcript"
        if self.min_avg_logprob is not None and label.avg_logprob < self.min_avg_logprob:
            return f"mean log-probability {label.avg_logprob:.2f} < {self.min_avg_logprob}"
        if self.max_compression_ratio is not None and label.compression_ratio > self.max_compression_ratio:
            return f"compression ratio {label.compression_ratio:.2f} > {self.max_compression_ratio} (a loop)"
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@torch.no_grad()
def mean_token_logprob(bundle: WhisperBundle, example: Example, encoder_states: torch.Tensor) -> float:
    """Mean log-probability of an example's target tokens (text and end of text) under `bundle`'s model,
    teacher-forced in one decoder pass over the clip's encoder output."""
    model = bundle.model
    tokens = torch.tensor([example.tokens], dtype=torch.long)
    hidden = model.model.decoder(input_ids=tokens[:, :-1], encoder_hidden_states=encoder_states).last_hidden_state
    logprobs = F.log_softmax(model.proj_out(hidden)[0].float(), dim=-1)
    targets = tokens[0, 1:]
    picked = logprobs.gather(1, targets[:, None])[:, 0]
    return float(picked[example.prompt_length - 1 :].mean())


def labelling_language(student: WhisperBundle, language: str | None) -> str | None:
    """The language a teacher transcribes in: English for an English-only student (it cannot learn another
    language's text), else the clip's language when known, else detected by the teacher."""
    return "en" if not student.special.is_multilingual else language


def pseudo_label(
    teacher: WhisperBundle, utt_id: str, samples: np.ndarray, language: str | None, runner: TorchRunner | None = None
) -> PseudoLabel:
    """The teacher's greedy transcript of a clip of one window (as `Runner.transcribe` decodes it) and its
    confidence. The clip is encoded once: the greedy decode and the teacher-forced pass share the output."""
    check_one_window(utt_id, samples)
    runner = runner or TorchRunner(teacher)
    encoded = runner.encode(runner.features(samples))
    tokens, language = runner.decode_window(encoded, language)
    text = decode_text(runner.tokenizer, tokens, runner.special)
    language = language or "en"
    example = make_example(teacher, utt_id, samples, tokens, text, language)
    return PseudoLabel(
        utt_id=utt_id,
        text=text,
        tokens=list(tokens),
        language=language,
        avg_logprob=round(mean_token_logprob(teacher, example, encoded), 5),
        compression_ratio=round(compression_ratio(text), 5),
        labeller=teacher.model_id,
    )


def most_confident(labels: list[PseudoLabel]) -> PseudoLabel:
    """The label with the highest mean token log-probability (the first one on a tie)."""
    if not labels:
        raise EdgeAsrError("no pseudo-labels to choose from")
    return max(labels, key=lambda label: label.avg_logprob)


def example_from_label(student: WhisperBundle, samples: np.ndarray, label: PseudoLabel) -> Example:
    """The student's training example: the labeller's own tokens when it is the student, else its text
    tokenised by the student."""
    same_vocabulary = label.labeller == student.model_id
    ids = label.tokens if same_vocabulary else text_tokens(student, label.text)
    language = label.language if student.special.is_multilingual else None
    return make_example(student, label.utt_id, samples, ids, label.text, language)
