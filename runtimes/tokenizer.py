"""Whisper's special tokens, prompts and text decoding.

`SpecialTokens` is plain data (ints and lists) so it can travel inside exported artifacts and be used by
runners that have no transformers model, e.g. an ONNX or ExecuTorch runner, or the Android app.
"""

from __future__ import annotations

import itertools
import json
from array import array
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


def byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character -> the byte it stands for (GPT-2's reversible map:
    printable Latin-1 bytes stand for themselves, the others are shifted to code points from 256 on)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[chr(byte)] = byte
        else:
            mapping[chr(256 + shifted)] = byte
            shifted += 1
    return mapping


_STAND_INS = byte_decoder()


def token_bytes(piece: str) -> bytes:
    """The bytes a byte-level BPE token's text stands for; ValueError for a token that is not byte-level."""
    try:
        return bytes(_STAND_INS[ch] for ch in piece)
    except KeyError as exc:
        raise ValueError(f"token {piece!r} is not a byte-level BPE token") from exc


class TextDecoder:
    """Ids -> text for a byte-level BPE tokenizer.json (Whisper's), from its vocabulary alone.

    A runner only turns generated ids into text. `tokenizers.Tokenizer` also holds the merges and the
    encoding tables: about 19 MB resident for Whisper's tokenizer.json, which showed in every runner's peak.
    This keeps every id's bytes end to end in one buffer with an offset per id (about 0.6 MB for Whisper's
    51,865 ids; a Python bytes object per id held 3 MB). Same text as `Tokenizer.decode` (its ByteLevel
    decoder joins the tokens' bytes and decodes them as UTF-8, an invalid sequence becoming U+FFFD;
    tests/test_tokenizer.py compares the two); ids it does not know are skipped, as there.
    """

    def __init__(self, pieces: list[bytes | None], special: frozenset[int]):
        """`pieces`: id -> the token's bytes (an added token's: its text in UTF-8); None: an unknown id."""
        self._buffer = b"".join(piece or b"" for piece in pieces)
        # Id i's bytes are _buffer[_ends[i - 1]:_ends[i]]; an unknown id has none (and is skipped, as empty).
        self._ends = array("I", itertools.accumulate(len(piece or b"") for piece in pieces))
        self._known = bytes(piece is not None for piece in pieces)
        self.special = special

    def __len__(self) -> int:
        return len(self._ends)

    def piece(self, token_id: int) -> bytes | None:
        """The bytes id `token_id` stands for; None for an id the vocabulary does not have."""
        if not (0 <= token_id < len(self._ends) and self._known[token_id]):
            return None
        start = self._ends[token_id - 1] if token_id else 0
        return self._buffer[start : self._ends[token_id]]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        kept = (i for i in ids if not (skip_special_tokens and i in self.special))
        return b"".join(piece for piece in map(self.piece, kept) if piece is not None).decode("utf-8", errors="replace")

    @classmethod
    def from_json(cls, data: dict) -> TextDecoder:
        model, decoder = data.get("model") or {}, data.get("decoder") or {}
        if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
            raise ValueError("not a byte-level BPE tokenizer (Whisper's is BPE with a ByteLevel decoder)")
        vocab, added = model["vocab"], data.get("added_tokens") or []
        size = 1 + max([*vocab.values(), *(token["id"] for token in added)])
        pieces: list[bytes | None] = [None] * size
        for token, token_id in vocab.items():
            pieces[token_id] = token_bytes(token)
        for token in added:  # added tokens are not byte-mapped: their text is their content
            pieces[token["id"]] = token["content"].encode("utf-8")
        return cls(pieces, frozenset(token["id"] for token in added if token.get("special")))


def load_tokenizer(path: str | Path) -> TextDecoder:
    """The text decoder of the tokenizer.json an artifact ships beside its model files."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"tokenizer not found: {path} (it is written next to the model files)")
    try:
        return TextDecoder.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON errors are ValueErrors
        raise EdgeAsrError(f"{path} is not a readable tokenizer.json ({exc})") from exc


def decode_text(tokenizer: Tokenizer | TextDecoder, tokens: list[int], special: SpecialTokens) -> str:
    """Text of generated tokens; special and timestamp tokens (ids >= end of text) are dropped."""
    return tokenizer.decode([t for t in tokens if t < special.eot], skip_special_tokens=True).strip()
