"""PQM-style personalisation: an NF4-quantised Whisper plus LoRA adapters trained on one speaker's clips.

base.py     the NF4 base: a uniform plan (every Linear NF4, the token embedding int4/int8) and its simulation;
lora.py     LoRA modules, injection into the base, adapter files (safetensors + JSON);
train.py    teacher-forced training of the adapters on CPU (labels or full-precision pseudo-labels);
run.py      `edgeasr personalize`: clips -> labels -> (pre-trained) adapters -> output folder;
export.py   `edgeasr export --lora`: NF4 + LoRA to ONNX (MatMulBnb4 + float LoRA MatMuls) and ExecuTorch.
"""
