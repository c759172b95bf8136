#!/usr/bin/env bash
# GPU check and speed: the demo training of all three tasks on CUDA, a Multi30k model scored on
# test2016 (BLEU must match the CPU figure), then translation and training speed on the GPU
# (batches of 64 and 256 sentences), host syncs per decoding step, and where the time of a whole
# `attn translate test2016.en` goes (start-up, CUDA initialization, first batch, the rest).
#
#     bash bench/gpu.sh MODEL_DIR MULTI30K_DIR OUT_DIR
#
# MODEL_DIR is a trained Multi30k en->de model (recipes/multi30k-en-de.toml); the JSON results
# of bench/translate_speed.py, bench/train_speed.py and bench/startup_phases.py are written to
# OUT_DIR (six files).
set -uo pipefail
model=$1 data=$2 out=$3
mkdir -p "$out"
ATTN_HOME=$(mktemp -d)
export ATTN_HOME PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

step() {
    echo "== $*"
    local start=$SECONDS
    timeout 300 "$@"
    echo "-- exit $?, $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

step attn train translate --device cuda
echo "A young bird likes the letter." | attn translate --device cuda
step attn train summarize --device cuda
step attn train sentiment --device cuda
echo "What a wonderful, moving film." | attn sentiment --device cuda
step attn evaluate translate -m "$model" --data "$data" --split test2016 --beam 4 --device cuda
step "$python" bench/translate_speed.py -m "$model" --device cuda --batch-size 64 \
    --out "$out/translate_speed_cuda.json"
step "$python" bench/translate_speed.py -m "$model" --device cuda --batch-size 256 \
    --out "$out/translate_speed_cuda_256.json"
step "$python" bench/train_speed.py --device cuda --steps 200 --out "$out/train_speed_cuda.json"
step "$python" bench/train_speed.py --device cuda --steps 200 --batch-tokens 16384 \
    --out "$out/train_speed_cuda_16k.json"
step "$python" bench/gpu_syncs.py "$model" "$data/test2016.en"
step "$python" bench/startup_phases.py -m "$model" --device cuda --source "$data/test2016.en" \
    --out "$out/startup_phases_cuda.json"
