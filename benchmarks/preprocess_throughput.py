"""Images/s per worker of our image preprocessing against transformers' ``CLIPImageProcessor``.

Both sides get the same decoded RGB pictures (``load_image`` then our ``to_rgb``) and both pad to a
square with the mean colour first, as the original does before calling CLIP's processor. Ours is
``MPLUGOwl2ImageProcessor`` (pad, shortest edge 448 bicubic, centre crop, rescale, normalise);
the reference is the pad written out from reference-mplug-owl2.md §7 followed by
``CLIPImageProcessor`` configured like Q-Align's preprocessor_config.json. One worker means one
process with one torch thread, the unit the input pipeline scales by. The outputs are compared
element-wise (they must be identical; the largest absolute difference is reported).

Also timed: decoding alone (``load_image``), so decode + preprocess per worker is known, which
is what the scoring pipeline's workers do.

Example::

    python benchmarks/preprocess_throughput.py --num-images 64 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from _bench import Recorder, machine_info, make_images
from _pipeline import CLIP_MEAN, CLIP_STD, load_image, make_image_processor

from artquant_model._images import expand_to_square as _expand_to_square  # the original's pad

logger = logging.getLogger("preprocess_throughput")


def make_clip_processor(image_size: int = 448) -> Any:
    """transformers' CLIP processor as Q-Align configures it (PIL backend, bicubic)."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(
        do_resize=True,
        size={"shortest_edge": image_size},
        resample=3,
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def _time_per_image(
    fn: Callable[[Any], Any], items: Sequence[Any], rounds: int
) -> tuple[float, list[Any]]:
    """Median over ``rounds`` of the seconds per item of ``fn``; the last round's outputs."""
    times, outputs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        outputs = [fn(item) for item in items]
        times.append((time.perf_counter() - start) / len(items))
    return statistics.median(times), outputs


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--image-dir", type=Path, default=None)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.rounds < 1:
        parser.error(
            f"--num-images and --rounds must be positive, got {args.num_images}, {args.rounds}"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    torch.set_num_threads(1)  # one worker = one process, one thread

    recorder = Recorder({"script": "preprocess_throughput", "workers": 1}, log_path=args.log)
    recorder.emit(kind="machine", **machine_info())
    ours = make_image_processor(args.image_size)
    clip = make_clip_processor(args.image_size)
    red, green, blue = (int(255 * m) for m in CLIP_MEAN)
    background = (red, green, blue)

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.image_dir or Path(tmp)
        paths = sorted(directory.glob("img*"))[: args.num_images]
        if len(paths) < args.num_images:
            paths = make_images(directory, args.num_images, seed=args.seed)
        # RGB by our documented rule first (alpha over the mean colour), so both sides start
        # from the same RGB picture; CLIP's own convert("RGB") would drop alpha instead.
        decode_s, images = _time_per_image(lambda p: ours.to_rgb(load_image(p)), paths, args.rounds)
        ours_s, ours_out = _time_per_image(lambda im: ours([im])[0], images, args.rounds)
        clip_s, clip_out = _time_per_image(
            lambda im: torch.from_numpy(
                clip(_expand_to_square(im, background), return_tensors="np")["pixel_values"][0]
            ),
            images,
            args.rounds,
        )
    diffs = [
        float((a.float() - b.float()).abs().max()) for a, b in zip(ours_out, clip_out, strict=True)
    ]
    identical = sum(
        bool(torch.equal(a.float(), b.float())) for a, b in zip(ours_out, clip_out, strict=True)
    )
    megapixels = statistics.mean(im.size[0] * im.size[1] / 1e6 for im in images)
    for name, seconds in (
        ("decode", decode_s),
        ("ours", ours_s),
        ("clip", clip_s),
        ("decode+ours", decode_s + ours_s),
        ("decode+clip", decode_s + clip_s),
    ):
        recorder.emit(
            kind="preprocess",
            step=name,
            images=len(images),
            mean_megapixels=megapixels,
            ms_per_image=1000 * seconds,
            images_per_s=1 / seconds,
        )
    recorder.emit(
        kind="compare",
        images=len(images),
        identical=identical,
        max_abs_diff=max(diffs),
        ours_over_clip_speed=clip_s / ours_s,
        shape=list(ours_out[0].shape),
    )
    rows = [r for r in recorder.records if r["kind"] == "preprocess"]
    print(
        "\n"
        + recorder.table(
            ("step", "images", "mean_megapixels", "ms_per_image", "images_per_s"), rows
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
