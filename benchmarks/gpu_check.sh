#!/usr/bin/env bash
# The GPU checks, in one go, on a lent GPU machine (from the repo root, output under $OUT):
# CUDA correctness of a short bf16 run, GPT-2 124M throughput and MFU (bf16, compiled), and
# preference-model throughput at about 100M parameters in bf16.
set -x
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl; fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
python3 -c "import torch, pydantic, typer, rich, safetensors, tokenizers; print(torch.__version__, torch.cuda.get_device_name())"
timeout 150 python3 -m scalelab train --set "data.source='scalelab'" --set "model.size='s'" --set model.block_size=128 \
  --set train.iters=300 --set train.eval_every=100 --set "train.device='cuda'" --workdir "$OUT/w" --json | tail -1 | tee "$OUT/train_cuda.json"
timeout 240 python3 -m scalelab bench train --preset gpt2-124m --device cuda --data scalelab --set train.iters=120 \
  --json | tail -1 | tee "$OUT/bench_124m.json"
timeout 120 python3 benchmarks/bench_pm.py --device cuda --size L20 --context 256 --batch-size 16 --steps 10 --threads 1 \
  | tee "$OUT/bench_pm_gpu.json"
# issue 13: the chunked cross-entropy at 124M's output shape (loss / gradient differences, peak memory, ms),
# and PM vs LM tokens/s for one backbone on the GPU (bf16), side by side in one script (needs transformers
# and ../shared/data/hh-rlhf beside the checkout; it exits with a message where they are missing)
timeout 120 python3 benchmarks/gpu_chunked_loss.py | tee "$OUT/chunked_loss_gpu.json"
timeout 240 python3 benchmarks/bench_pm_vs_lm.py --device cuda --backbone gpt --steps 30 --batch 16 \
  | tee "$OUT/bench_pm_vs_lm_gpu.json"
