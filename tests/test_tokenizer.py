"""The runners' text decoder (runtimes.tokenizer.TextDecoder) against the tokenizers library it replaces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import TextDecoder, decode_text, load_tokenizer


@pytest.mark.parametrize("model", ["tiny_en", "base"])
def test_text_decoder_gives_the_tokenizers_library_s_text(model, request):
    """Random id sequences (bytes split mid-character included, and specials mixed in), and every single id:
    the same text as `Tokenizer.decode` with and without skipping specials."""
    bundle = request.getfixturevalue(model)
    ours = TextDecoder.from_json(json.loads(bundle.tokenizer.to_str()))
    theirs = bundle.tokenizer
    size = theirs.get_vocab_size(with_added_tokens=True)
    for token_id in range(size):
        assert ours.decode([token_id]) == theirs.decode([token_id], skip_special_tokens=True), token_id
    rng = np.random.default_rng(0)
    for _ in range(300):
        ids = rng.integers(0, size, size=int(rng.integers(1, 40))).tolist()
        for skip in (True, False):
            assert ours.decode(ids, skip) == theirs.decode(ids, skip_special_tokens=skip), ids
        text_ids = [i for i in ids if i < bundle.special.eot]
        assert decode_text(ours, text_ids, bundle.special) == decode_text(theirs, text_ids, bundle.special)


def test_text_decoder_holds_ids_in_one_buffer():
    """Unknown ids (holes in the vocabulary, out of range, negative) decode to nothing; empty pieces stay
    empty; specials are skipped only when asked."""
    ours = TextDecoder([b"a", None, b"", "\u00e9".encode(), b"<|x|>"], frozenset({4}))
    assert len(ours) == 5
    assert [ours.piece(i) for i in (-1, 0, 1, 2, 3, 4, 5)] == [None, b"a", None, b"", b"\xc3\xa9", b"<|x|>", None]
    assert ours.decode([0, 1, 2, 3, 4, 5, -1]) == "a\u00e9"
    assert ours.decode([0, 4], skip_special_tokens=False) == "a<|x|>"


def test_text_decoder_of_real_text_round_trips(tiny_en):
    ours = TextDecoder.from_json(json.loads(tiny_en.tokenizer.to_str()))
    for text in (" He could wait no longer.", " Grüße, naïve café: 東京 ☃", " 1,234.5%"):
        assert ours.decode(tiny_en.tokenizer.encode(text, add_special_tokens=False).ids) == text


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not a readable tokenizer.json"),
        ('{"model": {"type": "WordPiece", "vocab": {}}, "decoder": {"type": "WordPiece"}}', "byte-level BPE"),
        ('{"model": {"type": "BPE"}, "decoder": {"type": "ByteLevel"}}', "not a readable tokenizer.json"),
    ],
)
def test_a_broken_tokenizer_json_is_a_clear_error(tmp_path, content, why):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(EdgeAsrError, match=why):
        load_tokenizer(path)
    with pytest.raises(EdgeAsrError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "missing.json")
