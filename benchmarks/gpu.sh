#!/usr/bin/env bash
# GPU checks in one run, for a session that is lent a GPU (about 8 minutes on one H100/H200-class GPU):
# the GPU tests (resume equals an uninterrupted run on CUDA), the generator at 256 and 1024 px in both
# modulated-conv forms and both precisions, and the training step per strategy at 256 and 1024 px with
# peak memory. Every benchmark writes its results file under benchmarks/results/; commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
"$PY" -m pytest -q -m gpu tests
"$PY" benchmarks/generator.py --device cuda --res 256 1024 --batch 2 --repeats 5 --modconv grouped scaled
"$PY" benchmarks/generator.py --device cuda --res 256 1024 --batch 2 --repeats 5 --precision bf16
"$PY" benchmarks/train_step.py --device cuda --res 256 --precision fp32 bf16 --steps 10 --warmup 3
"$PY" benchmarks/train_step.py --device cuda --res 1024 --precision fp32 bf16 --layers all adaptive --k 18 \
    --steps 10 --warmup 3
# The issue's 1024 px setting: the paper's two teachers, adaptive k=18, with and without activation checkpointing.
"$PY" benchmarks/train_step.py --device cuda --res 1024 --precision fp32 bf16 --layers adaptive --k 18 \
    --clip ViT-B-32 ViT-B-16 --steps 10 --warmup 3
"$PY" benchmarks/train_step.py --device cuda --res 1024 --precision fp32 bf16 --layers adaptive --k 18 \
    --clip ViT-B-32 ViT-B-16 --steps 10 --warmup 3 --checkpointing
