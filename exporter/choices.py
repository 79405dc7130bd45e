"""The named choices of the library, in one module that imports nothing heavy.

The modules that implement a choice validate against these tuples (and import them from here), and the
CLI offers them, so a misspelt option is refused before torch or a model is loaded. Export targets and
artifact formats live with the backends (`exporter.lower.registry`), lowering options in
`exporter.lower.settings`.
"""

from __future__ import annotations

# myQASR planning (exporter/quant/): the order layers are lowered in, how scales are calibrated, and the
# statistic of |output| that ranks a layer's sensitivity.
ORDERS = ("myqasr", "reversed", "shuffled", "uniform")
CALIBRATIONS = ("minmax", "cosine", "hessian")
# Which code each weight gets once its scale is fixed (exporter/quant/gptq.py): the nearest one, or GPTQ's,
# which spreads each rounding error onto the weights not yet rounded, weighed by the user's activations; or
# auto: GPTQ where the plan holds a 2-bit Linear and there are clips to weigh by, nearest elsewhere. A plan
# records the rounding that ran (CODE_ROUNDINGS), never auto.
CODE_ROUNDINGS = ("nearest", "gptq")
ROUNDINGS = (*CODE_ROUNDINGS, "auto")
SENSITIVITY_METRICS = ("median", "mean", "max", "std")
DEFAULT_ORDER = ORDERS[0]
# How rungs are allocated under the budget (exporter/quant/allocate.py): myQASR's first fit in `ORDERS` order,
# that plan filled back up to the budget, the least-cost plan by measured per-layer costs, or auto: the
# knapsack where the filled plan reaches the linear ladder's lowest rung, fill elsewhere.
ALLOCATIONS = ("myqasr", "fill", "knapsack", "auto")
# auto, from every budget of the allocation benchmark (benchmarks/results/default_allocation.md, 14,038
# speechocean762 words over 40 pairs of plans): the knapsack against fill -2.0 [-3.7, -0.2] WER points over
# all budgets, -3.3 [-5.5, -0.9] on the 28 pairs where fill's plan reaches the lowest rung (base onnx 36 MB:
# -26 points on children, in ONNX Runtime too), +0.6 [-1.4, +2.9] elsewhere, where fill stays; auto against
# fill -2.2 [-3.7, -0.6]. The rule was proposed after base onnx 36 / 40 MB and tiny.en onnx 21 MB were seen;
# on the budgets measured after it (base onnx 33 MB, tiny.en onnx 20 / 19 MB) auto vs fill is -4.0 [-7.1, -1.0].
DEFAULT_ALLOCATION = "auto"
# What the knapsack minimises per layer and rung: "local", the layer's own output error (1 - cosine; seconds,
# exporter/quant/costs.py), or "output", the KL of the model's next-token distributions with only that layer
# quantised (a partial model pass per layer and rung; exporter/quant/output_costs.py). output was the default
# while the android ladder had a 2-bit embedding, which the local costs bought (children 80.9 % WER at tiny.en
# 35 MB). Without that rung (re-measured: benchmarks/results/allocation_tiny_en_android.md, 35 MB) local costs
# gave children 44.9 % and output 48.3 (+3.4 [-10.6, +13.1] points), adults 54.3 and 52.5, in 8-13 s
# instead of 274-486 s on 2 cores: local is the default again.
LAYER_COSTS = ("local", "output")
DEFAULT_LAYER_COST = "local"
# The ONNX pair's layout: the one sherpa-onnx loads (exporter/lower/onnx_sherpa.py; format "sherpa") or
# edgeasr's own (growing cache, full 30 s window; format "onnx"), which `--onnx-layout edgeasr` selects.
# sherpa is the default: measured with one plan in both layouts, on the same 80 clips, it was faster and used
# less run memory (benchmarks/results/onnx_layouts_*.md: RTF 0.34 vs 0.42 tiny.en, 0.23 vs 0.40 base), and
# every sherpa-onnx app loads it. edgeasr's layout stays for swapping per-user LoRA adapter files at run time.
ONNX_LAYOUTS = ("sherpa", "edgeasr")
DEFAULT_ONNX_LAYOUT = "sherpa"
# The .pte's methods: edgeasr's (2L encoder outputs) or ExecuTorch's ASR runner contract (format pte-runner).
PTE_LAYOUTS = ("edgeasr", "runner")
DEFAULT_PTE_LAYOUT = "edgeasr"
# auto, from benchmarks/rounding.py (speechocean762 age groups, paired intervals by speaker): GPTQ against
# nearest on plans with 2-bit Linears, base onnx 36 MB: fill's plan -18.3 [-27.1, -10.3] WER points (529
# words), the knapsack's -9.1 [-18.1, -0.3] (529) and on children -13.1 [-17.0, -9.1] (2,595); tiny.en onnx
# 21 MB -6.1 [-14.2, +0.8] (776), 20 MB (the knapsack's plan) on children -14.4 [-18.8, -10.1] (2,595).
# Without 2-bit layers no interval excludes 0 (tiny.en android 35 MB -1.5, base android 59 MB +0.2), so those
# plans keep nearest codes and the export's time. Cost where it runs: one
# more FP pass over the clips and the rounding, about 55 s for base on 2 cores (40 s + 15 s), 16 s for tiny.en.
DEFAULT_ROUNDING = "auto"
DEFAULT_CALIBRATION = "cosine"  # min/max without clips of the user (the plan is then not personalised)
DEFAULT_SENSITIVITY = SENSITIVITY_METRICS[0]
DEFAULT_CALIB_CLIPS = 32  # unlabelled clips of the user observed (a seeded sample when there are more)
# Planning ladders (exporter/quant/targets.py); "android" plans on the executorch ladder.
PLAN_TARGETS = ("android", "executorch", "onnx", "litert", "tflite-runtime", "sim", "nf4")

# Scoring (exporter/scoring.py) and grouping of results (exporter/data.py).
METRICS = ("wer", "wer_plain", "cer")
GROUP_KEYS = ("gender", "speaker", "language", "split")

# Decoding (runtimes/decoding.py).
TASKS = ("transcribe", "translate")

# Runtimes that run an exported artifact (runtimes/contract.py RUNTIMES), and `edgeasr bench`'s, which add the
# PyTorch references (exporter/bench.py).
ARTIFACT_RUNTIMES = ("executorch", "onnx", "litert", "sherpa-onnx", "tflite-runtime", "executorch-native")
BENCH_RUNTIMES = ("torch-fp", "torch", *ARTIFACT_RUNTIMES)
# Runtimes that `edgeasr runtimes install` sets up in an environment of their own (runtimes/tflite_process.py).
INSTALLABLE_RUNTIMES = ("tflite-runtime",)

# PQM (exporter/personalize/): how transcripts become training text, and the NF4 base's token-embedding format.
LABEL_STYLES = ("lower", "keep", "normalized")
EMBEDDINGS = ("int4", "int8", "fp32")
DEFAULT_EMBEDDING = EMBEDDINGS[0]
