"""`edgeasr export` as a package, one concern a module:

options.py   ExportOptions (what is asked), checked before anything expensive runs
inputs.py    calibration clips (the user's, or the generic set) and the output folder
budgeted.py  one artifact fitted to the byte budget: plan, lower (via exporter.lower.registry), re-plan
parity.py    the artifact against the simulated plan
report.py    report.md
bundle.py    --bundle: the .pte files into an app's assets
lora.py      --lora: NF4 base + a user's adapters
describe.py  `edgeasr inspect`
run.py       export(): the stages in order, written atomically (exporter.io.staged_dir)
"""

from importlib import import_module

# Public name -> the submodule that defines it. Loaded on first use, so that `edgeasr --help` and option
# checks do not import torch through the lowering modules.
_PUBLIC = {
    "ArtifactResult": "result",
    "BUNDLE_FILES": "bundle",
    "ExportOptions": "options",
    "MAX_ATTEMPTS": "budgeted",
    "OVERHEAD_ALLOWANCE": "budgeted",
    "bundle_artifacts": "bundle",
    "check_bundle_folder": "bundle",
    "check_parity": "parity",
    "describe_artifact": "describe",
    "describe_stages": "stages",
    "export": "run",
    "first_logits": "parity",
    "stage_values": "stages",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'exporter.export' has no attribute {name!r}")
    return getattr(import_module(f"exporter.export.{_PUBLIC[name]}"), name)
