#!/usr/bin/env bash
# Download the wheels gpu.sh needs on the GPU machine into .whl/ (git-ignored; the device tool
# carries it). That machine has Python 3.12, torch, transformers, peft, accelerate, safetensors,
# sentencepiece, tokenizers, numpy, pillow, tqdm, huggingface_hub and protobuf, but no pydantic
# (nor threadpoolctl, which artquant-data imports: the training benchmark needs it)
# and no network. Versions are the ones uv.lock pins, so the GPU run uses what CI tests.
# Needs network and pip; run from anywhere:  bash benchmarks/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."

locked() {  # the version uv.lock pins for a package
    awk -v name="$1" '$0 == "name = \"" name "\"" {getline; gsub(/version = |"/, ""); print; exit}' uv.lock
}

packages=()
for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions threadpoolctl; do
    version="$(locked "$name")"
    if [[ -z "$version" ]]; then
        echo "fetch_wheels: $name is not in uv.lock" >&2
        exit 1
    fi
    packages+=("$name==$version")
done

PYTHON="${PYTHON:-python3}"
mkdir -p .whl
"$PYTHON" -m pip download --quiet --dest .whl --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    "${packages[@]}"
ls -1 .whl
