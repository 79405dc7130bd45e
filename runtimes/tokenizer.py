"""Whisper's special tokens, prompts and text decoding.

`SpecialTokens` is plain data (ints and lists) so it can travel inside exported artifacts and be used by
runners that have no transformers model, e.g. an ONNX or ExecuTorch runner, or the Android app.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from runtimes.errors import EdgeAsrError

# Whisper's language codes in token order (<|en|> is the first language token).
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt la "
    "mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be "
    "tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue"
).split()


@dataclass(frozen=True)
class SpecialTokens:
    sot: int
    eot: int
    transcribe: int
    translate: int
    no_timestamps: int
    timestamp_begin: int
    is_multilingual: bool
    languages: dict[str, int] = field(default_factory=dict)  # code -> token id
    suppress: tuple[int, ...] = ()  # never generated
    suppress_begin: tuple[int, ...] = ()  # not generated as the first token (blank, end of text)

    def prompt(self, language: str | None = None, task: str = "transcribe") -> list[int]:
        """Decoder prompt without timestamps. English-only models take no language or task token."""
        if not self.is_multilingual:
            if language not in (None, "en"):
                raise EdgeAsrError(
                    f"this model is English-only; cannot transcribe language {language!r} "
                    "(use a multilingual model such as --model base)"
                )
            if task != "transcribe":
                raise EdgeAsrError("this model is English-only; it cannot translate (use --model base)")
            return [self.sot, self.no_timestamps]
        if language is None:
            raise EdgeAsrError("internal: multilingual prompt needs a language (detect it first)")
        if language not in self.languages:
            raise EdgeAsrError(f"unknown language {language!r}; use an ISO code such as en, de, fr, es")
        task_token = {"transcribe": self.transcribe, "translate": self.translate}.get(task)
        if task_token is None:
            raise EdgeAsrError(f"unknown task {task!r}: use transcribe or translate")
        return [self.sot, self.languages[language], task_token, self.no_timestamps]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["suppress"] = list(self.suppress)
        data["suppress_begin"] = list(self.suppress_begin)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SpecialTokens:
        fields = dict(data)
        fields["suppress"] = tuple(fields.get("suppress", ()))
        fields["suppress_begin"] = tuple(fields.get("suppress_begin", ()))
        return cls(**fields)


def special_tokens(
    tokenizer: Tokenizer, vocab_size: int, suppress: list[int], suppress_begin: list[int]
) -> SpecialTokens:
    """Collect the ids from a Whisper `tokenizer.json` (the layout is the same for all model sizes)."""

    def token_id(token: str) -> int:
        tid = tokenizer.token_to_id(token)
        if tid is None:
            raise EdgeAsrError(f"tokenizer has no {token} token; not a Whisper tokenizer")
        return int(tid)

    # Multilingual checkpoints have one more token (51865 vs 51864) than the English-only ones.
    is_multilingual = vocab_size >= 51865
    no_timestamps = token_id("<|notimestamps|>")
    languages = {}
    if is_multilingual:
        for code in LANGUAGES:
            tid = tokenizer.token_to_id(f"<|{code}|>")
            if tid is not None and tid < no_timestamps:
                languages[code] = int(tid)
    return SpecialTokens(
        sot=token_id("<|startoftranscript|>"),
        eot=token_id("<|endoftext|>"),
        transcribe=token_id("<|transcribe|>"),
        translate=token_id("<|translate|>"),
        no_timestamps=no_timestamps,
        timestamp_begin=no_timestamps + 1,
        is_multilingual=is_multilingual,
        languages=languages,
        suppress=tuple(int(t) for t in suppress),
        suppress_begin=tuple(int(t) for t in suppress_begin),
    )


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer.json an artifact ships beside its model files."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"tokenizer not found: {path} (it is written next to the model files)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
        raise EdgeAsrError(f"{path} is not a readable tokenizer.json ({exc})") from exc


def decode_text(tokenizer: Tokenizer, tokens: list[int], special: SpecialTokens) -> str:
    """Text of generated tokens; special and timestamp tokens (ids >= end of text) are dropped."""
    return tokenizer.decode([t for t in tokens if t < special.eot], skip_special_tokens=True).strip()
