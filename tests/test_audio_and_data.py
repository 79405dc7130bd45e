"""Audio reading and data sets, on real clips and on broken inputs made here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from exporter.data import load_dataset
from runtimes import audio
from runtimes.audio import CHUNK_SAMPLES, SAMPLE_RATE, chunks, load_audio, log_mel, log_mel_frames
from runtimes.errors import EdgeAsrError


def test_8khz_clip_is_resampled_to_16khz(shared_data):
    row = json.loads((shared_data / "fsdd" / "manifest.jsonl").read_text().splitlines()[0])
    path = shared_data / "fsdd" / row["audio_path"]
    raw, rate = sf.read(path)
    assert rate == 8000
    samples = load_audio(path, expected_rate=8000)
    assert samples.dtype == np.float32
    assert abs(samples.size - 2 * raw.size) <= 2


def test_stereo_is_downmixed(tmp_path):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    left, right = 0.5 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.flac", np.stack([left, right], axis=1), SAMPLE_RATE)
    mono = load_audio(tmp_path / "stereo.flac")
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000)), "cannot decode"),
        (lambda p: sf.write(p, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE), "silent"),
        (lambda p: sf.write(p, np.zeros(10, np.float32), SAMPLE_RATE), "shorter than 10 ms"),
    ],
    ids=["missing", "empty", "corrupt", "silent", "too-short"],
)
def test_bad_clips_are_clear_errors(tmp_path, make, message):
    path = tmp_path / "clip.wav"
    make(path)
    with pytest.raises(EdgeAsrError, match=message):
        load_audio(path)


def test_sample_rate_must_match_manifest(shared_data):
    path = shared_data / "an4" / "wav" / "test" / "fcaw" / "an406-fcaw-b.wav"
    with pytest.raises(EdgeAsrError, match="sample rate is 16000 Hz but the manifest says 8000"):
        load_audio(path, expected_rate=8000)


def test_log_mel_shape_and_chunks():
    samples = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 65).astype(np.float32) * 0.1
    windows = chunks(samples)
    assert [w.size for w in windows] == [480000, 480000, 80000]
    assert log_mel(windows[-1], 80).shape == (80, 3000)


def test_log_mel_skips_only_frames_of_zeros(shared_data, monkeypatch):
    """A short clip's log-mel transforms only the frames that reach its samples and writes the zero frames'
    value: bit for bit the whole window's transform, on real clips and at the lengths where the window's
    end (and its reflection) starts to matter; a shorter context or a client's framing is its first frames."""
    rng = np.random.default_rng(0)
    clips = [load_audio(p) for p in sorted((shared_data / "speechocean762" / "audio").glob("*/*.flac"))[:4]]
    clips += [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (161, 20_000, CHUNK_SAMPLES - 402)]
    clips += [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (CHUNK_SAMPLES - 401, CHUNK_SAMPLES)]
    skipping = [(log_mel(c, 80), log_mel_frames(c, 80, 7), audio._computed_frames(c.size)) for c in clips]
    assert [computed for *_, computed in skipping][4:] == [3, 127, 2999, 3000, 3000]  # ceil((200 + n) / 160) frames
    monkeypatch.setattr(audio, "_computed_frames", lambda n_samples: audio.FULL_FRAMES)  # every frame
    for clip, (features, first, _) in zip(clips, skipping, strict=True):
        whole = log_mel(clip, 80)
        assert np.array_equal(features, whole)
        assert np.array_equal(first, whole[:, :7]) and first.flags.c_contiguous
    with pytest.raises(ValueError, match="n_frames"):
        log_mel_frames(clips[0], 80, 0)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_whisper_feature_extractor(shared_data, n_mels):
    """The numpy front end computes what transformers' WhisperFeatureExtractor (Whisper's own recipe) does, to
    float round-off, on real speech of several lengths and on silence."""
    from transformers import WhisperFeatureExtractor

    reference = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16_000)
    clips = [load_audio(p) for p in sorted((shared_data / "english_misc" / "audio").glob("*.wav"))[:3]]
    clips += [
        load_audio(shared_data / "an4" / "wav" / "test" / "fcaw" / "an406-fcaw-b.wav"),
        np.zeros(8000, np.float32),
    ]
    for samples in clips:
        samples = samples[:480_000]
        expected = reference(samples, sampling_rate=16_000, return_tensors="np", padding="max_length").input_features[0]
        assert np.abs(log_mel(samples, n_mels) - expected).max() < 1e-4


def test_shared_manifests_load(shared_data):
    an4 = load_dataset(shared_data / "an4" / "manifest.jsonl")
    assert len(an4) == 438 and an4.has_transcripts
    assert {u.gender for u in an4} == {"female", "male"}
    test = an4.filter(split="test")
    assert len(test) == 130
    csv = load_dataset(shared_data / "an4" / "manifest.csv")
    assert [u.audio_path for u in csv] == [u.audio_path for u in an4]


def _manifest(tmp_path, rows, name="m.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_folder_and_manifest_layouts(tmp_path):
    (tmp_path / "spk").mkdir()
    sf.write(tmp_path / "spk" / "a.wav", np.full(1600, 0.1, np.float32), SAMPLE_RATE)
    sf.write(tmp_path / "b.flac", np.full(1600, 0.1, np.float32), SAMPLE_RATE)
    folder = load_dataset(tmp_path)
    assert [u.utt_id for u in folder] == ["b", "spk/a"] and not folder.has_transcripts
    manifest = _manifest(tmp_path, [{"audio_path": "spk/a.wav", "transcript": "HI", "gender": "female"}])
    data = load_dataset(manifest)
    assert data.utterances[0].transcript == "HI" and data.utterances[0].group("gender") == "female"
    with pytest.raises(EdgeAsrError, match="no 'speaker'"):
        data.utterances[0].group("speaker")


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"transcript": "HI"}], "missing column 'audio_path'"),
        ([{"audio_path": "../outside.wav"}], "outside the manifest's folder"),
        ([{"audio_path": "nope.wav"}], "audio file not found"),
    ],
)
def test_bad_manifests_are_clear_errors(tmp_path, rows, message):
    (tmp_path / "outside.wav").write_bytes(b"x")
    sub = tmp_path / "data"
    sub.mkdir()
    with pytest.raises(EdgeAsrError, match=message):
        load_dataset(_manifest(sub, rows))


def test_csv_without_audio_path_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("file,transcript\na.wav,HI\n")
    with pytest.raises(EdgeAsrError, match="'audio_path' column"):
        load_dataset(path)
