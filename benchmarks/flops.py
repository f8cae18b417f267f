"""Analytic FLOP count of scoring one image with mPLUG-Owl2, and the throughput ceiling it implies.

Only matrix products are counted (2 FLOPs per multiply-add); norms, softmax, activations, RoPE and
the embedding gather are left out: together they are well under 1 % of the total at every size
used here. Attention is counted in full (T x T scores and T x T weighted sums), as the math and
SDPA kernels compute it; for the LLM that over-counts a causal kernel by at most the LLM
attention term, which is 0.2 % of the full model's count.

Per image, with the reference-mplug-owl2.md notation:

* vision tower, T_v = N + 1 tokens (N = (S / P)^2 patches plus CLS):
  patch conv N * 3P^2 * Dv, then per layer T_v * (4 Dv^2 + 2 Dv Iv) for QKV, dense, fc1, fc2
  and 2 T_v^2 Dv for attention;
* abstractor, Q queries attending to K = Q + N + 1 keys (the queries and the image tokens in one
  softmax), per layer: query and out_proj on Q rows (2 Q Da^2), key and value on K rows
  (2 K Da^2), SwiGLU MLP on Q rows (3 Q Da Ia), attention 2 Q K Da; then visual_fc Q Da H;
* LLM over T = text + Q + 1 spliced tokens, per layer T (2 H^2 + 2 H kv + 3 H I) with
  kv = n_kv_heads * head_dim (q and o are H x H, k and v are H x kv), attention 2 T^2 H;
* LM head V * H per position read: one position on the fast path, T on the plain one.

The product also reuses the keys and values of the prompt's text before the image (15 tokens of
ArtQuant's prompt; ``artquant_model.PromptPrefixCache``), so per image it skips those rows'
LLM linear layers and their attention rows: ``prefix_saving`` counts that, apart from the total
(which stays the issue's reference count for the utilisation figures).

Run it as a script to print the breakdown of a named size::

    python benchmarks/flops.py --size full --peak-tflops 790
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "ARTQUANT_PROMPT_PREFIX_TOKENS",
    "ARTQUANT_PROMPT_TEXT_TOKENS",
    "FlopCount",
    "ModelDims",
    "count_flops",
    "main",
]

#: Text tokens of ArtQuant's scoring prompt (28 ids, one of them the -200 image placeholder).
ARTQUANT_PROMPT_TEXT_TOKENS = 27
#: Of those, the tokens before the image (BOS and "USER: How would ... painting?\n").
ARTQUANT_PROMPT_PREFIX_TOKENS = 15


@dataclass(frozen=True)
class ModelDims:
    """The sizes of an mPLUG-Owl2 model that decide its cost.

    Attributes:
        image_size: Input side S in pixels.
        patch_size: ViT patch side P.
        vision_hidden: Dv.
        vision_intermediate: Iv.
        vision_layers: Lv.
        num_queries: Q, the abstractor's learnable queries (the model adds one EOS token).
        abstractor_hidden: Da.
        abstractor_intermediate: Ia.
        abstractor_layers: La.
        hidden: H of the LLM.
        intermediate: I of the LLM.
        layers: L of the LLM.
        num_heads: nh.
        num_kv_heads: nkv.
        vocab: V.
        text_tokens: Text tokens of the prompt (the image placeholder not counted).
    """

    image_size: int
    patch_size: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    num_queries: int
    abstractor_hidden: int
    abstractor_intermediate: int
    abstractor_layers: int
    hidden: int
    intermediate: int
    layers: int
    num_heads: int
    num_kv_heads: int
    vocab: int
    text_tokens: int = ARTQUANT_PROMPT_TEXT_TOKENS

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelDims.{name} must be a positive int, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by num_heads {self.num_heads}")

    @property
    def num_patches(self) -> int:
        """N = (S / P)^2."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def spliced_length(self) -> int:
        """T = text tokens + Q + 1 image tokens (92 for ArtQuant's prompt on the real model)."""
        return self.text_tokens + self.num_queries + 1

    @classmethod
    def from_config_dict(
        cls, config: Mapping[str, Any], *, text_tokens: int = ARTQUANT_PROMPT_TEXT_TOKENS
    ) -> ModelDims:
        """Read the sizes from a config in the original ``config.json`` layout.

        Args:
            config: Top-level LLaMA keys plus ``visual_config = {"visual_model": ...,
                "visual_abstractor": ...}`` (``MPLUGOwl2Config.to_dict()`` has this shape).
            text_tokens: Text tokens of the scoring prompt.

        Returns:
            The dimensions.

        Raises:
            ValueError: If a key the count needs is missing.

        Example:
            >>> ModelDims.from_config_dict(json.load(open("config.json"))).spliced_length
            92
        """
        try:
            visual = config["visual_config"]
            vm, va = visual["visual_model"], visual["visual_abstractor"]
            return cls(
                image_size=int(vm["image_size"]),
                patch_size=int(vm["patch_size"]),
                vision_hidden=int(vm["hidden_size"]),
                vision_intermediate=int(vm["intermediate_size"]),
                vision_layers=int(vm["num_hidden_layers"]),
                num_queries=int(va["num_learnable_queries"]),
                abstractor_hidden=int(va["hidden_size"]),
                abstractor_intermediate=int(va["intermediate_size"]),
                abstractor_layers=int(va["num_hidden_layers"]),
                hidden=int(config["hidden_size"]),
                intermediate=int(config["intermediate_size"]),
                layers=int(config["num_hidden_layers"]),
                num_heads=int(config["num_attention_heads"]),
                num_kv_heads=int(
                    config.get("num_key_value_heads") or config["num_attention_heads"]
                ),
                vocab=int(config["vocab_size"]),
                text_tokens=text_tokens,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"config lacks a key the FLOP count needs ({exc}); expected the original "
                "config.json layout with visual_config.visual_model / visual_abstractor"
            ) from exc


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of scoring one image, by part.

    Attributes:
        vision_linear: Patch conv and the vision layers' linear layers.
        vision_attention: The vision layers' attention products.
        abstractor_linear: The abstractor's linear layers and ``visual_fc``.
        abstractor_attention: The abstractor's cross-attention products.
        llm_linear: The LLM layers' linear layers.
        llm_attention: The LLM layers' attention products.
        lm_head_per_position: The LM head at one position.
        spliced_length: Positions the plain path projects to the vocabulary.
        prefix_saving: What reusing the prompt's text before the image saves per image (the
            prefix rows of the LLM linear layers and of its attention).
    """

    vision_linear: int
    vision_attention: int
    abstractor_linear: int
    abstractor_attention: int
    llm_linear: int
    llm_attention: int
    lm_head_per_position: int
    spliced_length: int
    prefix_saving: int = 0

    @property
    def vision(self) -> int:
        """Vision tower total."""
        return self.vision_linear + self.vision_attention

    @property
    def abstractor(self) -> int:
        """Abstractor total."""
        return self.abstractor_linear + self.abstractor_attention

    def llm(self, lm_head: Literal["one", "all"] = "one") -> int:
        """LLM total with the LM head at one position (fast path) or at all (plain path)."""
        positions = self._positions(lm_head)
        return self.llm_linear + self.llm_attention + positions * self.lm_head_per_position

    def total(self, lm_head: Literal["one", "all"] = "one") -> int:
        """FLOPs of one image, end to end."""
        return self.vision + self.abstractor + self.llm(lm_head)

    def ceiling_images_per_s(
        self, peak_flops: float, lm_head: Literal["one", "all"] = "one"
    ) -> float:
        """Images per second a device with ``peak_flops`` FLOP/s could reach at 100 % use."""
        if peak_flops <= 0:
            raise ValueError(f"peak_flops must be positive, got {peak_flops}")
        return peak_flops / self.total(lm_head)

    def summary(self, peak_tflops: float | None = None) -> dict[str, float]:
        """A JSON-ready breakdown in TFLOP (and the ceiling when ``peak_tflops`` is given)."""
        tera = 1e12
        out = {
            "vision_tflop": self.vision / tera,
            "abstractor_tflop": self.abstractor / tera,
            "llm_tflop": self.llm("one") / tera,
            "lm_head_one_position_tflop": self.lm_head_per_position / tera,
            "lm_head_all_positions_tflop": self.spliced_length * self.lm_head_per_position / tera,
            "total_tflop": self.total("one") / tera,
            "total_plain_tflop": self.total("all") / tera,
            "spliced_length": float(self.spliced_length),
            "prefix_saving_tflop": self.prefix_saving / tera,
            "total_prefix_shared_tflop": (self.total("one") - self.prefix_saving) / tera,
        }
        if peak_tflops is not None:
            out["peak_tflops"] = peak_tflops
            out["ceiling_images_per_s"] = self.ceiling_images_per_s(peak_tflops * tera)
        return out

    def _positions(self, lm_head: str) -> int:
        if lm_head == "one":
            return 1
        if lm_head == "all":
            return self.spliced_length
        raise ValueError(f"lm_head must be 'one' or 'all', got {lm_head!r}")


def count_flops(dims: ModelDims, prefix_tokens: int = ARTQUANT_PROMPT_PREFIX_TOKENS) -> FlopCount:
    """Count the FLOPs of scoring one image (see the module docstring for the formulas).

    Args:
        dims: The model's sizes.
        prefix_tokens: Text tokens before the image, whose keys and values are reused.

    Returns:
        The per-part count.

    Example:
        >>> round(count_flops(full_dims).total() / 1e12, 2)
        1.96
    """
    d = dims
    n = d.num_patches
    t_v = n + 1
    dv, iv = d.vision_hidden, d.vision_intermediate
    vision_linear = 2 * n * 3 * d.patch_size**2 * dv
    vision_linear += d.vision_layers * 2 * t_v * (4 * dv * dv + 2 * dv * iv)
    vision_attention = d.vision_layers * 2 * (2 * t_v * t_v * dv)

    q, da, ia = d.num_queries, d.abstractor_hidden, d.abstractor_intermediate
    keys = q + t_v
    per_layer = 2 * q * da * da + 2 * keys * da * da + 3 * q * da * ia
    abstractor_linear = d.abstractor_layers * 2 * per_layer + 2 * q * da * d.hidden
    abstractor_attention = d.abstractor_layers * 2 * (2 * q * keys * da)

    t = d.spliced_length
    h = d.hidden
    kv = d.num_kv_heads * (h // d.num_heads)
    llm_linear = d.layers * 2 * t * (2 * h * h + 2 * h * kv + 3 * h * d.intermediate)
    llm_attention = d.layers * 2 * (2 * t * t * h)
    p = prefix_tokens
    if not 0 <= p < t:
        raise ValueError(f"prefix_tokens must be in [0, {t}), got {p}")
    prefix_saving = d.layers * 2 * p * (2 * h * h + 2 * h * kv + 3 * h * d.intermediate)
    prefix_saving += d.layers * 2 * (2 * p * t * h)
    return FlopCount(
        vision_linear=vision_linear,
        vision_attention=vision_attention,
        abstractor_linear=abstractor_linear,
        abstractor_attention=abstractor_attention,
        llm_linear=llm_linear,
        llm_attention=llm_attention,
        lm_head_per_position=2 * d.vocab * h,
        spliced_length=t,
        prefix_saving=prefix_saving,
    )


def main(argv: list[str] | None = None) -> int:
    """Print the FLOP breakdown of a named size as one JSON line and a short table."""
    from _bench import SIZES  # a sibling script module; imported late so tests can import us

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="device peak, TFLOP/s")
    args = parser.parse_args(argv)
    dims = ModelDims.from_config_dict(SIZES[args.size])
    summary = count_flops(dims).summary(args.peak_tflops)
    print(json.dumps({"kind": "flops", "size": args.size, **asdict(dims), **summary}))
    for key, value in summary.items():
        print(f"{key:>30}  {value:,.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
