#!/usr/bin/env bash
# The GPU measurements, from source, in under 5 minutes, on a machine that has only Python 3.12,
# torch, transformers and their usual companions (peft, accelerate, safetensors, sentencepiece,
# tokenizers, numpy, pillow, tqdm, huggingface_hub, protobuf): no uv, no pydantic, no network.
#
# Before: bash benchmarks/fetch_wheels.sh (on a machine with network) puts the missing wheels in
# .whl/; carry .whl/ along with the source tree.
#
#   bash benchmarks/gpu.sh                 # full size, cuda, bf16, batch 1,8,32,64
#   DRY_RUN=1 bash benchmarks/gpu.sh       # the same steps on the CPU with the tiny size (~1 min)
#
# Environment: OUT (log folder; default benchmarks/out/gpu-<UTC time>), SITE (where the wheels are
# installed; default $TMPDIR/aq-site), PYTHON (default python3), BUDGET (seconds per throughput
# measurement; default 10), NUM_IMAGES (default 1024), WORKERS (decode processes; default
# cores - 2, at most 14), VISUAL_EAGER=0 (skip the batch-32 run with the original's
# matmul-softmax attention in the ViT and abstractor; the product's default is fused), COMPILE=1 (add a torch.compile run at batch 32), LOAD_GB (checkpoint size of
# the load benchmark; default 2.5; 0 skips it), QWEN_TOKENIZER (a Qwen2-vocabulary tokenizer
# folder with its chat template for the Qwen3.5-sized runs; default ../shared/tokenizers/qwen2_vl;
# the Qwen runs are skipped, saying so, when it is missing), QWEN=0 (skip the Qwen runs),
# TRAIN=0 (skip the training-throughput comparison, trainer vs plain loop).
set -euo pipefail

# Everything runs inside main, read whole before it starts, so editing this file during a run
# cannot change what the run does.
main() {
    cd "$(dirname "$0")/.."
    PYTHON="${PYTHON:-python3}"
    OUT="${OUT:-benchmarks/out/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
    SITE="${SITE:-${TMPDIR:-/tmp}/aq-site}"
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu.log") 2>&1
    started=$SECONDS
    step() { printf '\n=== %s (%s, %ds)\n' "$1" "$(date -u +%H:%M:%S)" "$((SECONDS - started))"; }

    step "environment"
    if ! "$PYTHON" -c "import pydantic" 2>/dev/null; then
        if ! compgen -G ".whl/*.whl" >/dev/null; then
            echo "gpu.sh: pydantic is missing and .whl/ holds no wheels; run benchmarks/fetch_wheels.sh first" >&2
            exit 2
        fi
        "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$SITE" .whl/*.whl
    fi
    # Our packages run from source; each gets a minimal .dist-info beside the wheels so that
    # importlib.metadata (their __version__) finds it, as an installed copy would provide.
    mkdir -p "$SITE"
    pypath="$PWD/benchmarks"
    for project in packages/*/pyproject.toml; do
        name="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$project" | head -1)"
        version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$project" | head -1)"
        info="$SITE/${name//-/_}-$version.dist-info"
        mkdir -p "$info"
        printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$name" "$version" > "$info/METADATA"
        pypath="$pypath:$PWD/$(dirname "$project")/src"
    done
    export PYTHONPATH="$pypath:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
    "$PYTHON" - <<'PY'
import sys, torch, transformers, artquant_model
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)
print("artquant_model from", artquant_model.__file__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$OUT/nvidia-smi.csv"

    cores="$(nproc)"
    WORKERS="${WORKERS:-$(( cores > 3 ? (cores - 2 < 14 ? cores - 2 : 14) : 1 ))}"
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        size=tiny device=cpu dtype=float32 batches=1,2,4 images="${NUM_IMAGES:-16}" unique=8 budget="${BUDGET:-5}"
        threads="$cores" big_batch=4
        load_gb="${LOAD_GB:-0.02}" load_base=tiny prep_images=8
        qwen_sizes=tiny qwen_batches=1,2 qwen_images=4
    else
        size=full device=cuda dtype=bfloat16 batches=1,8,32,64 images="${NUM_IMAGES:-1024}" unique=192 budget="${BUDGET:-10}"
        threads=4 big_batch=32  # the model process only launches kernels; cores go to decoding
        load_gb="${LOAD_GB:-2.5}" load_base=full prep_images=48
        qwen_sizes="qwen3.5-0.8b qwen3.5-4b" qwen_batches=1,8,32,64 qwen_images="${NUM_IMAGES:-1024}"
    fi
    QWEN_TOKENIZER="${QWEN_TOKENIZER:-$PWD/../shared/tokenizers/qwen2_vl}"
    images_dir="${TMPDIR:-/tmp}/aq-bench-images"

    step "FLOP count"
    "$PYTHON" benchmarks/flops.py --size full | tee "$OUT/flops.txt"

    step "preprocessing per worker vs CLIPImageProcessor"
    "$PYTHON" benchmarks/preprocess_throughput.py --num-images "$prep_images" --rounds 2 \
        --image-dir "$images_dir" --log "$OUT/preprocess.jsonl"

    step "scoring throughput ($size, $device, $dtype, batch $batches, $WORKERS workers)"
    "$PYTHON" benchmarks/score_throughput.py --size "$size" --device "$device" --dtype "$dtype" \
        --batch-sizes "$batches" --num-images "$images" --unique-images "$unique" --workers "$WORKERS" \
        --time-budget "$budget" --baseline-images 64 --image-dir "$images_dir" --threads "$threads" \
        --log "$OUT/score.jsonl"

    if [[ "${VISUAL_EAGER:-1}" == "1" ]]; then
        step "scoring throughput with the original's attention (eager) in the ViT and abstractor"
        "$PYTHON" benchmarks/score_throughput.py --size "$size" --device "$device" --dtype "$dtype" \
            --batch-sizes "$big_batch" --num-images "$images" --unique-images "$unique" \
            --workers "$WORKERS" --time-budget "$budget" --no-baseline --visual-attn eager \
            --image-dir "$images_dir" --threads "$threads" --log "$OUT/score_visual_eager.jsonl"
    fi

    if [[ "${COMPILE:-0}" == "1" ]]; then
        step "scoring throughput with torch.compile (batch 32)"
        "$PYTHON" benchmarks/score_throughput.py --size "$size" --device "$device" --dtype "$dtype" \
            --batch-sizes "$big_batch" --num-images "$images" --unique-images "$unique" --workers "$WORKERS" \
            --time-budget "$budget" --no-baseline --compile --image-dir "$images_dir" \
            --log "$OUT/score_compile.jsonl"
    fi

    if [[ "${QWEN:-1}" == "1" ]]; then
        if [[ -f "$QWEN_TOKENIZER/tokenizer.json" ]]; then
            for qsize in $qwen_sizes; do
                step "Qwen backbone: scoring throughput ($qsize random weights, $device, $dtype, batch $qwen_batches)"
                "$PYTHON" benchmarks/score_throughput.py --backbone qwen --size "$qsize" \
                    --device "$device" --dtype "$dtype" --batch-sizes "$qwen_batches" \
                    --num-images "$qwen_images" --unique-images "$unique" --baseline-images 32 \
                    --tokenizer "$QWEN_TOKENIZER" --image-dir "$images_dir" \
                    --log "$OUT/score_qwen_$qsize.jsonl"
            done
        else
            step "Qwen backbone: skipped, no tokenizer.json in $QWEN_TOKENIZER (set QWEN_TOKENIZER)"
        fi
    fi

    if [[ "${TRAIN:-1}" == "1" ]]; then
        step "training throughput: trainer vs plain loop (small, $device, $dtype)"
        train_size=small
        [[ "${DRY_RUN:-0}" == "1" ]] && train_size=tiny
        "$PYTHON" benchmarks/train_throughput.py --backbone both --size "$train_size" \
            --device "$device" --dtype "$dtype" --batch-size 8 --steps 8 --warmup 2 \
            --tokenizer "$QWEN_TOKENIZER" --log "$OUT/train.jsonl"
    fi

    if [[ "$load_gb" != "0" ]]; then
        step "load memory ($load_gb GB checkpoint)"
        "$PYTHON" benchmarks/load_memory.py --target-gb "$load_gb" --base-size "$load_base" \
            --log "$OUT/load.jsonl"
    fi

    step "done; logs in $OUT"
}

main "$@"
