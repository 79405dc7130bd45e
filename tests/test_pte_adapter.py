"""Per-user adapters apart from one base .pte (exporter/lower/pte_adapter.py): two users' adapters on one
program, each transcribing as that user's PyTorch NF4 + LoRA model; a program lowered for another user is
byte-identical (on a toy; tiny.en in benchmarks/pte_adapters.py); a bad adapter file is refused whole. One
tiny.en lowering (edgeasr's layout, about three minutes) and one of the one-layer toy (tests/conftest.py; the
ASR-runner layout, one minute)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from exporter.personalize.base import Nf4Options, nf4_plan
from exporter.personalize.lora import AdapterInfo, LoraConfig, lora_modules, lora_state, save_adapter
from runtimes.errors import EdgeAsrError
from tests.conftest import ROOT

CONFIG = LoraConfig(rank=4, alpha=8, dropout=0.0, targets=("q", "v"), scope=("decoder",))


def _user(bundle, seed: int, config: LoraConfig = CONFIG):
    """A model with a 'trained' adapter: B drawn at random (a fresh adapter has B = 0, which changes nothing)."""
    from exporter.personalize.run import adapted_model

    adapted = adapted_model(bundle, config, seed)
    generator = torch.Generator().manual_seed(seed)
    for module in lora_modules(adapted.model).values():
        module.lora_B.data.normal_(0.0, 0.05, generator=generator)
    return adapted


def test_two_users_share_one_base_pte(run_cli, tiny_en, shared_data, tmp_path, native_cache):
    """On tiny.en, so the transcripts compared are words (the issue's test); the runner layout's adapter
    plumbing below runs on the toy."""
    from exporter.export import ExportOptions
    from exporter.export.parity import check_parity, first_logits
    from exporter.quant.simulate import simulate
    from runtimes.artifact import open_artifact
    from runtimes.audio import load_audio, log_mel_frames
    from runtimes.torch_runner import TorchRunner

    base = Nf4Options().to_dict()
    users = {name: _user(tiny_en, seed) for name, seed in (("a", 1), ("b", 2))}
    for name, user in users.items():
        save_adapter(tmp_path / f"adapter_{name}", lora_state(user.model), AdapterInfo("tiny.en", CONFIG, base))
    calib = tmp_path / "calib"
    calib.mkdir()
    for clip in sorted((shared_data / "an4" / "wav" / "test" / "mdms2").glob("*.wav"))[:2]:
        (calib / clip.name).symlink_to(clip)

    # user A through `edgeasr export --lora`: base program + adapter.ptd, parity-checked like any export
    out = tmp_path / "export_a"
    args = ["export", "--model", "tiny.en", "--target", "android", "--budget", "80MB", "--lora", tmp_path / "adapter_a"]
    status, _, stderr = run_cli(*args, "--calib", calib, "--out", out, "--no-progress")
    assert status == 0, stderr
    summary = json.loads((out / "export.json").read_text())
    assert summary["artifacts"][0]["parity"]["matching"] == 2
    pte, adapter_a = out / "model.pte", out / "adapter.ptd"
    assert adapter_a.stat().st_size <= 0.02 * pte.stat().st_size  # the goal: <= 2 % of the base

    # B's file, written for A's export without lowering (`edgeasr adapter`). That B's own lowering gives A's
    # program byte for byte is checked on a toy below and on tiny.en by benchmarks/pte_adapters.py.
    status, stdout, stderr = run_cli(
        "adapter", "--artifact", out, "--lora", tmp_path / "adapter_b", "--out", tmp_path / "files_b"
    )
    assert status == 0, stderr
    adapter_b = tmp_path / "files_b" / "adapter.ptd"
    assert adapter_b.stat().st_size == adapter_a.stat().st_size and adapter_b.read_bytes() != adapter_a.read_bytes()

    # each user's file on the one program transcribes as that user's PyTorch NF4 + LoRA model
    wavs = sorted((shared_data / "an4" / "wav" / "test" / "fcaw").glob("*.wav"))[:3]  # short clips: seconds
    clips = [load_audio(p) for p in wavs]
    plan = nf4_plan(tiny_en)
    logits, texts = {}, {}
    for name, adapter in (("a", None), ("b", tmp_path / "files_b")):
        runner = open_artifact(out, adapters=adapter)
        parity = check_parity(runner, TorchRunner(simulate(users[name], plan)), clips, ExportOptions())
        assert parity["matching"] >= 2, parity["rows"]
        logits[name] = first_logits(runner, log_mel_frames(clips[0], runner.n_mels, runner.n_frames))
        texts[name] = parity["rows"][0]["artifact"]
    assert np.abs(logits["a"] - logits["b"]).max() > 1e-2 * np.abs(logits["a"]).max()  # B's adapter took effect
    # the same program and files through ExecuTorch's C++ runtime, loaded as an app does: Module(program, data)
    for name, adapter in (("a", None), ("b", tmp_path / "files_b")):
        native = open_artifact(out, runtime="executorch-native", adapters=adapter)
        try:
            native_logits = first_logits(native, log_mel_frames(clips[0], native.n_mels, native.n_frames))
            assert np.abs(native_logits - logits[name]).max() < 1e-4 * np.abs(logits[name]).max()
            assert native.transcribe(clips[0]).text == texts[name]
        finally:
            native.close()
    status, stdout, _ = run_cli("transcribe", "--artifact", out, "--adapter", tmp_path / "files_b", wavs[0])
    assert status == 0 and stdout.strip() == texts["b"]

    # refused whole, before ExecuTorch sees the file
    damaged = tmp_path / "damaged.ptd"
    data = bytearray(adapter_b.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    other_base = tmp_path / "other" / "model.pte"
    other_base.parent.mkdir()
    other_base.write_bytes(pte.read_bytes() + b"\0")  # any other program: its sha256 differs
    from runtimes.pte_adapter import read_adapter_file

    with pytest.raises(EdgeAsrError, match="checksum|not a readable"):
        read_adapter_file(damaged, pte)
    with pytest.raises(EdgeAsrError, match="another base program"):
        read_adapter_file(adapter_b, other_base)
    clip = sorted(calib.iterdir())[0]
    status, _, stderr = run_cli("transcribe", "--artifact", out, "--adapter", damaged, clip)
    assert status == 2 and "checksum" in stderr
    # an adapter of another rank, or for another model, gets no file at all
    rank_2 = LoraConfig(rank=2, alpha=4, dropout=0.0, targets=("q", "v"))
    save_adapter(
        tmp_path / "adapter_r2", lora_state(_user(tiny_en, 3, rank_2).model), AdapterInfo("tiny.en", rank_2, base)
    )
    status, _, stderr = run_cli(
        "adapter", "--artifact", out, "--lora", tmp_path / "adapter_r2", "--out", tmp_path / "r2"
    )
    assert status == 2 and "lora" in stderr and not (tmp_path / "r2").exists()
    # a base program needs its adapter file
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.pte", "tokenizer.json"):
        (bare / name).write_bytes((out / name).read_bytes())
    from runtimes.executorch_runner import ExecutorchRunner
    from runtimes.pte_native import NativePteRunner

    for runner in (ExecutorchRunner.open, NativePteRunner):
        with pytest.raises(EdgeAsrError, match="separate file"):
            runner(bare / "model.pte")


def test_runner_layout_takes_the_adapter_as_its_data_file(run_cli, toy_whisper, shared_data, tmp_path):
    """The ASR-runner layout with the adapter apart: what Android's AsrModule(model, tokenizer, dataPath)
    loads. Only the runner's contract is driven (tests/test_pte_runner_layout.py, which transcribes words on
    tiny.en), with each user's data file; on the toy the first step's logits are compared with PyTorch's."""
    from test_pte_runner_layout import CLIPS, runner_contract_transcribe

    from exporter.lower.registry import get_backend
    from exporter.quant.simulate import simulate
    from runtimes.audio import load_audio, log_mel_frames
    from runtimes.contract import PTE_FILE, PTE_PREPROCESSOR_FILE, TOKENIZER_FILE
    from runtimes.executorch_runner import load_program
    from runtimes.tokenizer import load_tokenizer
    from runtimes.torch_runner import TorchRunner

    base, sot = Nf4Options().to_dict(), toy_whisper.special.sot
    users = {name: _user(toy_whisper, seed) for name, seed in (("a", 1), ("b", 2))}
    info = AdapterInfo(toy_whisper.model_id, CONFIG, base)
    save_adapter(tmp_path / "adapter_b", lora_state(users["b"].model), info)
    folder = tmp_path / "runner"
    folder.mkdir()
    lora_info = {"model_id": toy_whisper.model_id, "lora": CONFIG.to_dict(), "base": base}
    plan = nf4_plan(toy_whisper)
    stored = get_backend("pte-runner").lower_lora(users["a"], plan, folder, lora_info, "branch-int8")
    assert {PTE_FILE, "adapter.ptd", TOKENIZER_FILE, PTE_PREPROCESSOR_FILE} <= {p.name for p in folder.iterdir()}
    status, _, stderr = run_cli(
        "adapter", "--artifact", folder, "--lora", tmp_path / "adapter_b", "--out", tmp_path / "b"
    )
    assert status == 0, stderr

    tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
    clip = shared_data / "english_misc" / "audio" / next(iter(CLIPS))
    features = log_mel_frames(load_audio(clip), toy_whisper.n_mels)
    first = {}
    for name, data in (("a", folder / "adapter.ptd"), ("b", tmp_path / "b" / "adapter.ptd")):
        program = load_program(folder / PTE_FILE, data)
        assert isinstance(runner_contract_transcribe(program, tokenizer, features, sot), str)  # the contract runs
        encoded = program.load_method("encoder").execute((torch.from_numpy(features)[None],))
        step = (torch.tensor([[sot]]), encoded[0], torch.tensor([0]))
        first[name] = program.load_method("text_decoder").execute(step)[0].numpy().reshape(-1)
        torch_runner = TorchRunner(simulate(users[name], plan))
        reference = np.asarray(torch_runner.start_decoder(torch_runner.encode(features)).step([sot])).reshape(-1)
        assert np.abs(first[name] - reference).max() <= 0.15 * np.abs(reference).max(), name  # measured 0.04-0.06
    assert np.abs(first["a"] - first["b"]).max() > 1e-2 * np.abs(first["a"]).max()  # the data file decides

    # edgeasr's own .ptd reader gives ExecuTorch's entries, refuses a truncated file, and keeps torch out of a
    # runner process that checks a file before ExecuTorch's C++ runtime loads it (runtimes/ptd.py)
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    from runtimes.ptd import read_ptd

    blob = (tmp_path / "b" / "adapter.ptd").read_bytes()
    payload = FlatTensorSerializer().deserialize(blob)
    assert read_ptd(blob) == {key: bytes(payload.buffers[e.buffer_index]) for key, e in payload.named_data.items()}
    for cut in (len(blob) // 2, 200, 10):
        with pytest.raises(ValueError):
            read_ptd(blob[:cut])
    check = (
        "import sys; import runtimes.pte_native; from runtimes.pte_adapter import read_adapter_file; "
        f"read_adapter_file({str(tmp_path / 'b' / 'adapter.ptd')!r}, {str(folder / PTE_FILE)!r}); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    _check_the_app_bundle(run_cli, folder, stored, tmp_path)


class _TwoBranches(torch.nn.Module):
    """Two Linears with LoRA branches, named as edgeasr's LoRA state names them (`<layer>.lora_A/B`)."""

    def __init__(self, zero_b: bool):
        super().__init__()
        from exporter.personalize.lora import LoRALinear

        generator = torch.Generator().manual_seed(0)
        self.q = LoRALinear(torch.nn.Linear(64, 64), rank=4, alpha=8, generator=generator)
        self.v = LoRALinear(torch.nn.Linear(64, 64), rank=4, alpha=8, generator=generator)
        if not zero_b:
            for module in (self.q, self.v):
                module.lora_B.data.normal_(0.0, 0.05, generator=generator)

    def forward(self, x):
        return self.v(self.q(x))


def _lower_toy(model):
    from exporter.lower.executorch import ADAPTER_TAG, lower, tag_adapter_constants

    example = (torch.randn(1, 3, 64),)
    program = tag_adapter_constants(torch.export.export(model.eval(), example, strict=False), example)
    data, files = lower({"forward": program}, {})
    return data, files[f"{ADAPTER_TAG}.ptd"], example


def _check_the_app_bundle(run_cli, folder, stored, tmp_path):
    """The Android bundle of a base program whose adapter is apart: the program once, each user's file as
    adapters/<user>.ptd (what the app hands AsrModule as its data file), a file for another program never."""
    from exporter.export import ExportOptions
    from exporter.export.bundle import _drop_other_programs_adapters, bundle_artifacts, check_lora_bundle
    from runtimes.contract import PLAN_FILE, PTE_FILE, SUMMARY_FILE

    stored.save(folder / PLAN_FILE)
    summary = {"artifacts": [{"format": "pte-runner", "folder": "."}], "options": {"lora": str(tmp_path / "user-a")}}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary))
    assets = tmp_path / "assets"
    bundle_artifacts(folder, assets)
    assert (assets / "adapters" / "user-a.ptd").read_bytes() == (folder / "adapter.ptd").read_bytes()
    assert (assets / PTE_FILE).read_bytes() == (folder / PTE_FILE).read_bytes()
    args = ["adapter", "--artifact", folder, "--lora", tmp_path / "adapter_b", "--out", tmp_path / "b2"]
    status, _, stderr = run_cli(*args, "--bundle", assets, "--user", "b")
    assert status == 0, stderr
    assert (assets / "adapters" / "b.ptd").read_bytes() == (tmp_path / "b2" / "adapter.ptd").read_bytes()
    bundle_artifacts(folder, assets)  # the same program again: its users stay
    assert sorted(p.name for p in (assets / "adapters").iterdir()) == ["b.ptd", "user-a.ptd"]

    # refused, and nothing written: a bad user name, a bundle without a runner-layout program, a file for
    # another program (the keys are the same for every base, so ExecuTorch would load it silently)
    for extra, message in (
        (["--user", "../b"], "cannot name a bundled adapter file"),
        (["--bundle", tmp_path / "empty"], "holds no bundled model.pte"),
        (["--artifact", tmp_path], "holds no .pte, so there is no adapter file to bundle"),
    ):
        status, _, stderr = run_cli(*args[:-1], tmp_path / "b3", "--bundle", assets, *extra)
        assert status != 0 and message in stderr, stderr
        assert not (tmp_path / "b3").exists()
    other = tmp_path / "other_program"
    other.mkdir()
    for name in ("tokenizer.json", "preprocessor.pte"):
        (other / name).write_bytes((assets / name).read_bytes())
    (other / PTE_FILE).write_bytes((assets / PTE_FILE).read_bytes() + b"\0")
    from exporter.export.bundle import bundle_user_adapter

    with pytest.raises(EdgeAsrError, match="another base program"):
        bundle_user_adapter(tmp_path / "b2" / "adapter.ptd", other, "b")
    assert not (other / "adapters").exists()
    (assets / PTE_FILE).write_bytes((other / PTE_FILE).read_bytes())  # a new program bundled by hand
    _drop_other_programs_adapters(assets)
    assert list((assets / "adapters").iterdir()) == []

    # edgeasr's layout with the adapter apart: the app's Module takes no data file, so it is not bundled
    edgeasr_layout = tmp_path / "edgeasr_layout"
    edgeasr_layout.mkdir()
    for name in (PTE_FILE, "tokenizer.json", PLAN_FILE, "adapter.ptd"):
        (edgeasr_layout / name).write_bytes((folder / name).read_bytes())
    summary["artifacts"][0]["format"] = "pte"
    (edgeasr_layout / SUMMARY_FILE).write_text(json.dumps(summary))
    with pytest.raises(EdgeAsrError, match="--pte-layout runner"):
        bundle_artifacts(edgeasr_layout, tmp_path / "assets_2")
    assert not (tmp_path / "assets_2").exists()
    options = {"model": "tiny.en", "budget": "80MB", "lora": tmp_path / "user-a"}
    with pytest.raises(EdgeAsrError, match="--pte-layout runner"):
        check_lora_bundle(ExportOptions(**options))
    check_lora_bundle(ExportOptions(**options, pte_layout="runner"))
    check_lora_bundle(ExportOptions(**options, lora_pte_mode="merged-int8"))


def test_keys_are_renamed_by_name_and_an_untrained_adapter_is_refused(tmp_path):
    """Seconds, on a toy: the content keys XNNPACK wrote become name-derived ones (so another user's file
    loads), and equal adapter tensors (B = 0 everywhere) are refused instead of sharing one key."""
    from exporter.lower.pte_adapter import stabilise_keys, write_adapter_file
    from runtimes.executorch_runner import load_program
    from runtimes.pte_adapter import adapter_key

    first = _TwoBranches(zero_b=False)
    users = [first, copy.deepcopy(first)]
    with torch.no_grad():
        users[1].q.lora_B.mul_(-1.0)  # user 2 differs only in one adapter tensor
    info = {"model_id": "toy", "base": {}, "lora": {"rank": 4, "alpha": 8, "targets": ["q", "v"], "scope": ["x"]}}
    programs = []
    for user in users:
        data, ptd, example = _lower_toy(user)
        state = lora_state(user)
        program = stabilise_keys(data, ptd, state)
        assert all(adapter_key(name).encode() in program for name in state)
        programs.append(program)
    assert programs[0] == programs[1]  # the program no longer depends on the adapter's values
    pte = tmp_path / "model.pte"
    pte.write_bytes(programs[0])
    contract = {**info, "tensors": {n: {"key": adapter_key(n), "shape": list(t.shape)} for n, t in state.items()}}
    write_adapter_file(pte, contract, lora_state(users[1]), info, tmp_path / "user2.ptd")
    out = load_program(pte, tmp_path / "user2.ptd").load_method("forward").execute(example)[0]
    assert torch.allclose(out, users[1](*example), atol=1e-4)

    untrained = _TwoBranches(zero_b=True)
    data, ptd, _ = _lower_toy(untrained)
    with pytest.raises(EdgeAsrError, match="identical values"):
        stabilise_keys(data, ptd, lora_state(untrained))


def test_adapter_files_are_refused_for_artifacts_that_hold_one_user(run_cli, tiny_en, tiny_export, tmp_path):
    """`edgeasr adapter` says why, and writes nothing, for a pair in sherpa-onnx's layout (the adapter is built
    into its graphs) and for a .pte that keeps no adapter apart."""
    user = _user(tiny_en, 1)
    save_adapter(tmp_path / "adapter", lora_state(user.model), AdapterInfo("tiny.en", CONFIG, Nf4Options().to_dict()))
    sherpa = tmp_path / "sherpa"
    sherpa.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", "tokens.txt", "tokenizer.json"):
        (sherpa / name).write_bytes(b"")
    out, _ = tiny_export  # model.pte without LoRA at the top, the sherpa pair below it
    for artifact, said in ((sherpa, "sherpa-onnx's layout"), (out, "keeps no adapter apart")):
        status, _, stderr = run_cli(
            "adapter", "--artifact", artifact, "--lora", tmp_path / "adapter", "--out", tmp_path / "o"
        )
        assert status == 2 and said in stderr, stderr
        assert not (tmp_path / "o").exists()
