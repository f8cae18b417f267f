"""Peak host memory and time to load a checkpoint, against its bytes on disk.

Writes a random mPLUG-Owl2 checkpoint in the released layout (``config.json`` plus
``model.safetensors``, bf16 like the releases) of about ``--target-gb`` GB, streamed tensor by
tensor so the writer never holds it whole. Then, for each loader, a **fresh** Python process
imports the package, notes its resident set, loads the checkpoint onto the CPU in the checkpoint's
dtype and reports its peak resident set (VmHWM) and wall time. The target is a peak at most 1.3x
the bytes on disk; the process's resident set before loading (Python, torch) is reported too, and
the ratio is given both with and without it.

Loaders compared: ``artquant_model.load_model`` (the product path) and
``MPLUGOwl2ForCausalLM.from_pretrained`` (transformers' path).

Example::

    python benchmarks/load_memory.py --target-gb 2.5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import SIZES, Recorder, machine_info, peak_rss_bytes

logger = logging.getLogger("load_memory")

GIB = 2**30
LOADERS = ("load_model", "from_pretrained", "load_model_lora")
#: LoRA of the ArtQuant release: every q_proj and the image branch of v_proj, r 128, alpha 256.
LORA_RANK, LORA_ALPHA = 128, 256
_SAFETENSORS_DTYPES = {"torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32"}


def checkpoint_config(
    target_bytes: int, *, base: str = "full", dtype_bytes: int = 2
) -> dict[str, Any]:
    """A config whose checkpoint is about ``target_bytes``: ``base`` with the LLM depth adjusted.

    For ``base="full"`` the vision tower and abstractor are the released ones and the LLM keeps
    LLaMA-2's vocabulary at width 2048 (intermediate 5504, 16 heads), so a few GB is reached
    with a realistic mix of tensor shapes. Other bases keep their own widths. The LLM depth is
    the smallest that reaches ``target_bytes`` (at least one layer).

    Args:
        target_bytes: Wanted checkpoint size in bytes.
        base: A size of ``_bench.SIZES``.
        dtype_bytes: Bytes per stored element.

    Returns:
        A config dict in the original layout.

    Raises:
        ValueError: Unknown ``base``.
    """
    if base not in SIZES:
        raise ValueError(f"unknown base size {base!r}; choose one of {sorted(SIZES)}")
    config = json.loads(json.dumps(SIZES[base]))
    if base == "full":
        config.update(
            hidden_size=2048, intermediate_size=5504, num_attention_heads=16, num_key_value_heads=16
        )
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    # per layer: q, o (H^2 each), k and v twice (multiway), gate/up/down, 4 norm vectors
    per_layer = 6 * hidden * hidden + 3 * hidden * inter + 4 * hidden
    vm = config["visual_config"]["visual_model"]
    va = config["visual_config"]["visual_abstractor"]
    dv, da = vm["hidden_size"], va["hidden_size"]
    vision = vm["num_hidden_layers"] * (4 * dv * dv + 2 * dv * vm["intermediate_size"])
    abstractor = va["num_hidden_layers"] * (4 * da * da + 3 * da * va["intermediate_size"])
    fixed = 2 * vocab * hidden + vision + abstractor + da * hidden
    layers = max(1, -(-(target_bytes // dtype_bytes - fixed) // per_layer))
    config["num_hidden_layers"] = int(layers)
    return config


def write_random_checkpoint(directory: Path, config: dict[str, Any], *, seed: int = 0) -> int:
    """Write ``config.json`` and a random bf16 ``model.safetensors``; returns the file's bytes.

    The state dict's names and shapes come from the model built on the meta device (so they are
    exactly what the loaders expect); the file is written in the safetensors layout (8-byte
    header length, JSON header, raw little-endian data) one tensor at a time.
    """
    import torch

    from artquant_model import MPLUGOwl2Config, MPLUGOwl2ForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        model = MPLUGOwl2ForCausalLM(MPLUGOwl2Config(**json.loads(json.dumps(config))))
    state = model.state_dict()
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in state.items():
        dtype = torch.bfloat16 if tensor.dtype.is_floating_point else tensor.dtype
        nbytes = tensor.numel() * dtype.itemsize
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES.get(str(dtype), "I64"),
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    generator = torch.Generator().manual_seed(seed)
    path = directory / "model.safetensors"
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(blob)))
        handle.write(blob)
        for name, tensor in state.items():
            if tensor.dtype.is_floating_point:
                values = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                values = (values * 0.02).to(torch.bfloat16)
            else:
                values = torch.zeros(tensor.shape, dtype=tensor.dtype)
            handle.write(values.contiguous().view(torch.uint8).numpy().tobytes())
            logger.debug("wrote %s", name)
    saved = dict(config, architectures=["MPLUGOwl2LlamaForCausalLM"], torch_dtype="bfloat16")
    (directory / "config.json").write_text(json.dumps(saved, indent=2))
    return path.stat().st_size


def write_random_lora_release(directory: Path, base: Path, *, seed: int = 1) -> int:
    """Write an ArtQuant-style LoRA release over the checkpoint in ``base``; returns its bytes.

    The layout of ArtQuant's training script: ``adapter_config.json`` (peft, r 128, alpha 256,
    targets every ``q_proj`` and ``v_proj.multiway.1``), ``adapter_model.bin`` (the A/B
    matrices, keys ``base_model.model.model.layers.{i}...lora_A.weight``),
    ``non_lora_trainables.bin`` (the whole vision tower and abstractor, keys
    ``base_model.model.model.vision_model...``) and ``config.json``. Random bf16 values.
    """
    import torch

    config = json.loads((base / "config.json").read_text())
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    generator = torch.Generator().manual_seed(seed)
    targets, adapter = [], {}
    for layer in range(layers):
        for module in ("q_proj", "v_proj.multiway.1"):
            name = f"model.layers.{layer}.self_attn.{module}"
            targets.append(name)
            for part, shape in (("lora_A", (LORA_RANK, hidden)), ("lora_B", (hidden, LORA_RANK))):
                values = torch.randn(shape, generator=generator) * 0.01
                adapter[f"base_model.model.{name}.{part}.weight"] = values.to(torch.bfloat16)
    from safetensors import safe_open

    trainables = {}
    with safe_open(str(base / "model.safetensors"), "pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if key.startswith(("model.vision_model.", "model.visual_abstractor.")):
                tensor = handle.get_tensor(key)
                noise = torch.randn(tensor.shape, generator=generator) * 0.001
                trainables[f"base_model.model.{key}"] = (tensor.float() + noise).to(tensor.dtype)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(adapter, directory / "adapter_model.bin")
    torch.save(trainables, directory / "non_lora_trainables.bin")
    peft_config = {
        "base_model_name_or_path": str(base),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "lora_alpha": LORA_ALPHA,
        "lora_dropout": 0.05,
        "peft_type": "LORA",
        "r": LORA_RANK,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
    }
    (directory / "adapter_config.json").write_text(json.dumps(peft_config, indent=2))
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    del trainables, adapter
    return sum(p.stat().st_size for p in directory.iterdir())


def _drop_page_cache(path: Path) -> bool:
    """Evict the checkpoint from the page cache (POSIX_FADV_DONTNEED) so loads start cold."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def child(loader: str, path: Path, base: Path | None = None) -> dict[str, Any]:
    """Run inside the fresh process: import, load, measure."""
    import torch
    from _pipeline import product

    from artquant_model import MPLUGOwl2ForCausalLM

    rss_before = peak_rss_bytes()
    start = time.perf_counter()
    if loader == "load_model":
        model = product("load_model")(path, dtype="bfloat16", device="cpu")
    elif loader == "from_pretrained":
        model = MPLUGOwl2ForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    elif loader == "load_model_lora":  # path is the release, merged into the base in place
        model = product("load_model")(path, base=base, dtype="bfloat16", device="cpu")
    else:
        raise ValueError(f"unknown loader {loader!r}; choose one of {LOADERS}")
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    # Read every page of every weight once (one element in 1024 is one per 2 KiB): a lazily
    # mapped model would otherwise look cheaper than it is. No full-size temporary is made.
    checksum = float(sum(p.reshape(-1)[::1024].float().sum() for p in model.parameters()))
    return {
        "loader": loader,
        "seconds": seconds,
        "rss_before_load": rss_before,
        "peak_rss": peak_rss_bytes(),
        "params": params,
        "param_dtypes": dtypes,
        "checksum": checksum,
    }


def measure(loader: str, path: Path, *, cold: bool, base: Path | None = None) -> dict[str, Any]:
    """Run :func:`child` in a new interpreter and return what it reports."""
    if cold:
        for folder in (path, base):
            for file in folder.iterdir() if folder else ():
                _drop_page_cache(file)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        loader,
        "--path",
        str(path),
    ]
    if base is not None:
        command += ["--base", str(base)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{loader} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Entry point (also the child process's, with ``--child``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target-gb", type=float, default=2.5, help="checkpoint size (GB = 1e9 bytes)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir, removed after)"
    )
    parser.add_argument(
        "--loaders",
        default=",".join(LOADERS),
        help="load_model (full checkpoint), from_pretrained, load_model_lora (an ArtQuant LoRA "
        "release over the checkpoint, merged)",
    )
    parser.add_argument(
        "--base-size", choices=sorted(SIZES), default="full", help="widths of the checkpoint"
    )
    parser.add_argument(
        "--warm", action="store_true", help="leave the file in the page cache between loads"
    )
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--child", choices=LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.path, args.base)))
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    loaders = [name.strip() for name in args.loaders.split(",") if name.strip()]
    unknown = sorted(set(loaders) - set(LOADERS))
    if unknown or not loaders:
        parser.error(f"--loaders takes a comma-separated subset of {LOADERS}, got {args.loaders!r}")
    if args.target_gb <= 0:
        parser.error(f"--target-gb must be positive, got {args.target_gb}")

    recorder = Recorder({"script": "load_memory"}, log_path=args.log)
    recorder.emit(kind="machine", **machine_info())
    tmp = None if args.dir else tempfile.mkdtemp(prefix="aq-load-")
    directory = args.dir or Path(tmp) / "checkpoint"  # type: ignore[arg-type]
    try:
        config = checkpoint_config(int(args.target_gb * 1e9), base=args.base_size)
        start = time.perf_counter()
        checkpoint_size = write_random_checkpoint(directory, config)
        recorder.emit(
            kind="checkpoint",
            bytes=checkpoint_size,
            gib=checkpoint_size / GIB,
            llm_layers=config["num_hidden_layers"],
            write_seconds=time.perf_counter() - start,
        )
        release = directory.parent / "lora_release"
        release_size = 0
        if "load_model_lora" in loaders:
            release_size = write_random_lora_release(release, directory)
            recorder.emit(kind="lora_release", bytes=release_size, gib=release_size / GIB)
        for loader in loaders:
            lora = loader == "load_model_lora"
            result = measure(
                loader, release if lora else directory, cold=not args.warm,
                base=directory if lora else None,
            )  # fmt: skip
            peak, before = result["peak_rss"], result["rss_before_load"]
            # the release's files are read too: the base plus everything in the release
            size = checkpoint_size + (release_size if lora else 0)
            recorder.emit(
                kind="load",
                loader=loader,
                seconds=result["seconds"],
                peak_rss_gib=peak / GIB,
                rss_before_load_gib=before / GIB,
                peak_over_disk=peak / size,
                load_increment_over_disk=(peak - before) / size,
                disk_gib=size / GIB,
                params=result["params"],
                param_dtypes=result["param_dtypes"],
                cache="warm" if args.warm else "cold",
            )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = [r for r in recorder.records if r["kind"] == "load"]
    print(
        "\n"
        + recorder.table(
            (
                "loader",
                "disk_gib",
                "peak_rss_gib",
                "rss_before_load_gib",
                "peak_over_disk",
                "load_increment_over_disk",
                "seconds",
            ),
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
