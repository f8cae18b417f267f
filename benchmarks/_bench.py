"""Shared pieces of the benchmark scripts: model sizes, prompt ids, test images, memory probes,
machine description and output (one JSON line per measurement, a table at the end).

Nothing here imports torch or artquant at module level, so ``flops.py`` and the tests of these
helpers stay cheap; the functions that need torch import it inside.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import random
import resource
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ARTQUANT_LEVEL_IDS",
    "ARTQUANT_LEVEL_VALUES",
    "ARTQUANT_PROMPT_IDS",
    "IMAGE_TOKEN_INDEX",
    "SIZES",
    "Recorder",
    "current_rss_bytes",
    "machine_info",
    "make_images",
    "peak_rss_bytes",
    "reset_peak_rss",
]

IMAGE_TOKEN_INDEX = -200

#: ArtQuant's scoring prompt "USER: How would you rate the quality of this painting?\n<|image|>
#: ASSISTANT: The quality of the painting is" through the LLaMA-2 tokenizer and the original
#: ``tokenizer_image_token`` (checked against ../shared in tests/test_bench_helpers.py). Held as
#: ids so the benchmarks run without a tokenizer file (the GPU machine has none).
ARTQUANT_PROMPT_IDS: tuple[int, ...] = (
    1, 3148, 1001, 29901, 1128, 723, 366, 6554, 278, 11029, 310, 445, 20413, 29973, 13,
    IMAGE_TOKEN_INDEX,
    29871, 319, 1799, 9047, 13566, 29901, 450, 11029, 310, 278, 20413, 338,
)  # fmt: skip
#: excellent, good, fair, poor, bad in the LLaMA-2 vocabulary.
ARTQUANT_LEVEL_IDS: tuple[int, ...] = (15129, 1781, 6534, 6460, 4319)
ARTQUANT_LEVEL_VALUES: tuple[float, ...] = (10.0, 7.5, 5.0, 3.5, 1.0)


def _config(
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    vision: tuple[int, int, int, int],
    abstractor: tuple[int, int, int, int, int],
) -> dict[str, Any]:
    """An mPLUG-Owl2 config dict in the original config.json layout (448 px, patch 14)."""
    v_hidden, v_inter, v_layers, v_heads = vision
    queries, a_hidden, a_inter, a_layers, a_heads = abstractor
    return {
        "model_type": "mplug_owl2",
        "vocab_size": 32000,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "visual_config": {
            "visual_model": {
                "hidden_size": v_hidden,
                "intermediate_size": v_inter,
                "num_hidden_layers": v_layers,
                "num_attention_heads": v_heads,
                "image_size": 448,
                "patch_size": 14,
                "num_channels": 3,
                "layer_norm_eps": 1e-6,
                "hidden_act": "quick_gelu",
            },
            "visual_abstractor": {
                "num_learnable_queries": queries,
                "hidden_size": a_hidden,
                "encoder_hidden_size": a_hidden,
                "intermediate_size": a_inter,
                "num_hidden_layers": a_layers,
                "num_attention_heads": a_heads,
                "layer_norm_eps": 1e-6,
                "grid_size": 32,
            },
        },
    }


#: Model sizes of the benchmarks. All take 448 px images (1,024 patches, so the abstractor's
#: 32 x 32 position grid fits) and the real 32,000-word vocabulary (the prompt's ids are real).
#:
#: * ``tiny``: the ../shared vocab32k fixture's shape (LLM 64 wide, 2 layers); for dry runs.
#: * ``small``: the real token counts (1,025 vision tokens, 64 queries, 92 spliced tokens) at
#:   about 1/4 of the width and 1/6 to 1/8 of the depth: vision 256 wide x 4 layers,
#:   abstractor 256 x 2, LLM 512 x 4 (8 heads). About 16 GFLOP per image, so a 2-core CPU scores
#:   a few images per second and every stage of the real pipeline is exercised at its real
#:   token count.
#: * ``full``: LLaMA-2-7B + ViT-L/14-448 + the 6-layer abstractor, as released.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": _config(
        hidden=64, intermediate=176, layers=2, heads=4,
        vision=(32, 96, 2, 4), abstractor=(8, 32, 48, 2, 4),
    ),
    "small": _config(
        hidden=512, intermediate=1376, layers=4, heads=8,
        vision=(256, 1024, 4, 4), abstractor=(64, 256, 704, 2, 4),
    ),
    "full": _config(
        hidden=4096, intermediate=11008, layers=32, heads=32,
        vision=(1024, 4096, 24, 16), abstractor=(64, 1024, 2816, 6, 16),
    ),
}  # fmt: skip


def make_images(
    directory: Path, count: int, *, seed: int = 0, workers: int | None = None
) -> list[Path]:
    """Write ``count`` varied test pictures (JPEG and PNG) into ``directory``.

    Sizes are what users feed in: long side 512 to 2048 px, aspect ratio 1:2 to 2:1 (log-uniform),
    so both the padding and the resize do real work. About 3 in 4 are JPEG (quality 90), the rest
    PNG; a few PNGs are grayscale or RGBA so the mode conversion runs too. Content is smooth
    colour structure plus noise (pure noise would make PNGs unrealistically large and slow).
    Picture ``i`` depends only on ``(seed, i)``, so the files are the same whatever ``workers``.

    Args:
        directory: Where to write (created if missing).
        count: How many pictures.
        seed: Seed of the sizes, formats and content.
        workers: Processes writing in parallel (default: one per core, at most ``count // 8``).

    Returns:
        The paths, in index order.

    Raises:
        ValueError: If ``count`` is not positive.

    Example:
        >>> paths = make_images(Path("/tmp/pics"), 8)
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    directory.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, count // 8))
    jobs = [(directory, seed, index) for index in range(count)]
    if workers <= 1:
        return [_make_image(*job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_make_image, *zip(*jobs, strict=True)))


def _make_image(directory: Path, seed: int, index: int) -> Path:
    """Picture ``index`` of :func:`make_images`."""
    import numpy as np
    from PIL import Image

    rng = random.Random(f"{seed}/{index}")
    nprng = np.random.default_rng([seed, index])
    long_side = rng.randint(512, 2048)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    width, height = (
        (long_side, max(1, round(long_side / aspect)))
        if aspect >= 1
        else (max(1, round(long_side * aspect)), long_side)
    )
    coarse = nprng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    picture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    noise = nprng.integers(-12, 13, size=(height, width, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(picture, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels)
    if rng.random() < 0.75:
        path = directory / f"img{index:05d}_{width}x{height}.jpg"
        picture.save(path, quality=90)
    else:
        mode = rng.choice(["RGB", "RGB", "L", "RGBA"])
        path = directory / f"img{index:05d}_{width}x{height}.png"
        picture.convert(mode).save(path, compress_level=1)
    return path


def _status_field(name: str) -> int | None:
    """A ``kB`` field of /proc/self/status in bytes, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    """Peak resident set of this process (VmHWM; since the last :func:`reset_peak_rss`)."""
    value = _status_field("VmHWM")
    if value is None:  # not Linux: ru_maxrss is in kB on Linux, bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return value


def current_rss_bytes() -> int:
    """Current resident set of this process (VmRSS), or the peak where that is unavailable."""
    value = _status_field("VmRSS")
    return peak_rss_bytes() if value is None else value


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def machine_info() -> dict[str, Any]:
    """Where and when a figure was measured: CPU, cores, memory, GPU, library versions, UTC date."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="ascii") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    if hasattr(os, "sched_getaffinity"):
        info["cpu_count"] = len(os.sched_getaffinity(0))
    for module in ("torch", "transformers", "PIL", "numpy"):
        if module in sys.modules or module == "torch":
            try:
                imported = __import__(module)
            except ImportError:
                continue
            info[f"{module.lower()}_version"] = getattr(imported, "__version__", "?")
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Recorder:
    """Prints one JSON line per measurement and keeps them for the closing table.

    Args:
        context: Fields added to every line (script, size, machine...).
        stream: Where lines go (stdout by default).
        log_path: An optional JSONL file that also receives every line.
    """

    def __init__(
        self,
        context: Mapping[str, Any] | None = None,
        *,
        stream: Any = None,
        log_path: Path | None = None,
    ) -> None:
        self.context = dict(context or {})
        self.records: list[dict[str, Any]] = []
        self._stream = stream if stream is not None else sys.stdout
        self._log_path = log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, **fields: Any) -> dict[str, Any]:
        """Print and keep one measurement (``context`` fields first)."""
        record = {**self.context, **fields}
        line = json.dumps(record, default=str)
        print(line, file=self._stream, flush=True)
        if self._log_path is not None:
            with self._log_path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        self.records.append(record)
        return record

    def table(self, columns: Sequence[str], rows: Iterable[Mapping[str, Any]] | None = None) -> str:
        """A fixed-width text table of ``columns`` over the kept records (or ``rows``)."""
        rows = list(self.records if rows is None else rows)
        cells = [[_format_cell(row.get(col)) for col in columns] for row in rows]
        widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
        lines = ["  ".join(col.rjust(w) for col, w in zip(columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)


def _format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e6:
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)
