"""mPLUG-Owl2 as native transformers 5 modules: ViT, visual abstractor and LLaMA-2 with the MAM.

The module tree reproduces the original checkpoint names (``model.vision_model.*``,
``model.visual_abstractor.*``, ``model.layers.{i}.self_attn.k_proj.multiway.{0,1}``, ``lm_head``),
so released state dicts load without renaming and peft targets such as ``q_proj`` and
``v_proj.multiway.1`` resolve. Attention in the language model goes through transformers' attention
interface (sdpa by default, eager, flash_attention_2), the KV cache is a ``DynamicCache`` and
generation is ``GenerationMixin``'s. Nothing in transformers is patched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import can_return_tuple

from artquant_model.backbones.mplug_owl2._multimodal import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    MultimodalInputs,
    check_padding_side,
    position_ids_from_mask,
    splice_attention_mask,
    splice_inputs,
)
from artquant_model.backbones.mplug_owl2.configuration_mplug_owl2 import (
    MPLUGOwl2AbstractorConfig,
    MPLUGOwl2Config,
    MPLUGOwl2VisionConfig,
)

__all__ = [
    "IMAGE_TOKEN_INDEX",
    "MPLUGOwl2ForCausalLM",
    "MPLUGOwl2Model",
    "MPLUGOwl2PreTrainedModel",
    "MultimodalInputs",
]

ImagesInput = torch.Tensor | Sequence[torch.Tensor]

# transformers renamed the output field ``past_key_values`` to ``cache`` (and warns on the old
# name); use whichever this version declares.
_CACHE_FIELD = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)

# ---------------------------------------------------------------------------------------------
# Sin-cos tables of the abstractor (MAE recipe, computed in float32 numpy like the original).
# ---------------------------------------------------------------------------------------------


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=np.float32)
    omega /= dim / 2.0
    omega = 1.0 / 10000**omega
    angles = np.einsum("m,d->md", positions.reshape(-1).astype(np.float32), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def query_position_table(dim: int, num_queries: int) -> torch.Tensor:
    """``q_pos_embed``: the 1-D sin-cos table over the query indices, ``[num_queries, dim]``."""
    return torch.from_numpy(_sincos_1d(dim, np.arange(num_queries, dtype=np.float32))).float()


def key_position_table(dim: int, grid_size: int) -> torch.Tensor:
    """``k_pos_embed``: a zero CLS row, then the 2-D sin-cos table, ``[grid_size**2 + 1, dim]``.

    The first half of each row encodes the column index, the second half the row index, with
    patch ``p = row * grid_size + col``.
    """
    coords = np.arange(grid_size, dtype=np.float32)
    cols, rows = np.meshgrid(coords, coords)
    table = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], axis=1)
    table = np.concatenate([np.zeros((1, dim), dtype=np.float32), table], axis=0)
    return torch.from_numpy(table).float()


# ---------------------------------------------------------------------------------------------
# Vision tower
# ---------------------------------------------------------------------------------------------


def _plain_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    eager: bool,
    eager_divisor: float | None = None,
) -> torch.Tensor:
    """Unmasked attention over ``[batch, heads, length, dim]``.

    ``eager`` reproduces the original's arithmetic: softmax in the tensor dtype (no float32
    upcast) and, where the original divides the scores by ``sqrt(head_dim)`` instead of
    multiplying by ``scale``, that division (``eager_divisor``); it is then bit-identical.
    """
    if eager:
        scores = torch.matmul(query, key.transpose(-1, -2))
        scores = scores / eager_divisor if eager_divisor is not None else scores * scale
        return torch.matmul(torch.softmax(scores, dim=-1), value)
    return F.scaled_dot_product_attention(query, key, value, scale=scale)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the original ViT activation, whatever ``hidden_act`` says."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MPLUGOwl2VisionEmbeddings(nn.Module):
    """Patch convolution (no bias), CLS token, learned positions, then ``pre_layernorm``."""

    def __init__(self, config: MPLUGOwl2VisionConfig) -> None:
        super().__init__()
        self.num_positions = config.num_patches + 1
        self.cls_token = nn.Parameter(torch.empty(1, 1, config.hidden_size))
        self.patch_embed = nn.Conv2d(
            config.num_channels,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=config.patch_size,
            bias=False,
        )
        self.position_embedding = nn.Parameter(
            torch.empty(1, self.num_positions, config.hidden_size)
        )
        self.pre_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.patch_embed.weight
        patches = self.patch_embed(pixel_values.to(device=weight.device, dtype=weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype)
        embeddings = torch.cat([cls, patches], dim=1)
        embeddings = embeddings + self.position_embedding[:, : embeddings.shape[1]].to(
            embeddings.dtype
        )
        return self.pre_layernorm(embeddings)


class MPLUGOwl2VisionAttention(nn.Module):
    """Bidirectional self-attention with the original's per-head interleaved QKV projection."""

    def __init__(self, config: MPLUGOwl2VisionConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.root_config = root_config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    @property
    def eager(self) -> bool:
        """Whether to use the original's arithmetic (``visual_attn_implementation="eager"``)."""
        return self.root_config.visual_attn_implementation != "sdpa"

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden_states.shape
        # Output row h*3*dh + t*dh + e is component t (q, k, v) of head h.
        mixed = self.query_key_value(hidden_states)
        mixed = mixed.reshape(batch, length, self.num_heads, 3, self.head_dim).permute(
            3, 0, 2, 1, 4
        )
        context = _plain_attention(mixed[0], mixed[1], mixed[2], self.scale, self.eager)
        context = context.transpose(1, 2).reshape(batch, length, width)
        return self.dense(context)


class MPLUGOwl2VisionMLP(nn.Module):
    """``fc2(QuickGELU(fc1(x)))``."""

    def __init__(self, config: MPLUGOwl2VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class MPLUGOwl2VisionLayer(GradientCheckpointingLayer):
    """A pre-LN transformer block of the ViT."""

    def __init__(self, config: MPLUGOwl2VisionConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = MPLUGOwl2VisionAttention(config, root_config)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MPLUGOwl2VisionMLP(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states))
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class MPLUGOwl2VisionEncoder(nn.Module):
    """The stack of ViT layers (``encoder.layers``)."""

    def __init__(self, config: MPLUGOwl2VisionConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [MPLUGOwl2VisionLayer(config, root_config) for _ in range(config.num_hidden_layers)]
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return hidden_states


class MPLUGOwl2VisionModel(nn.Module):
    """The ViT: embeddings, encoder, and ``post_layernorm`` over all tokens (CLS included).

    ``root_config`` is the model configuration, read for the attention implementation.
    """

    def __init__(self, config: MPLUGOwl2VisionConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.config = config
        self.embeddings = MPLUGOwl2VisionEmbeddings(config)
        self.encoder = MPLUGOwl2VisionEncoder(config, root_config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Map ``[n, 3, S, S]`` pixels to ``[n, (S/P)**2 + 1, Dv]`` features."""
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values)))


# ---------------------------------------------------------------------------------------------
# Visual abstractor
# ---------------------------------------------------------------------------------------------


class MPLUGOwl2AbstractorAttention(nn.Module):
    """Queries attending to themselves and the image in one softmax, with sin-cos positions."""

    q_pos_embed: torch.Tensor
    k_pos_embed: torch.Tensor

    def __init__(self, config: MPLUGOwl2AbstractorConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.root_config = root_config
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.width = width
        self.num_queries = config.num_learnable_queries
        self.grid_size = config.resolved_grid_size
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(config.encoder_hidden_size, width)
        self.value = nn.Linear(config.encoder_hidden_size, width)
        self.register_buffer("q_pos_embed", query_position_table(width, self.num_queries))
        self.register_buffer("k_pos_embed", key_position_table(width, self.grid_size))

    @property
    def eager(self) -> bool:
        """Whether to use the original's arithmetic (``visual_attn_implementation="eager"``)."""
        return self.root_config.visual_attn_implementation != "sdpa"

    def reset_position_tables(self) -> None:
        """Recompute the sin-cos buffers (for checkpoints that do not store them)."""
        init.copy_(self.q_pos_embed, query_position_table(self.width, self.num_queries))
        init.copy_(self.k_pos_embed, key_position_table(self.width, self.grid_size))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Attend from normalised ``queries [B,Q,D]`` over ``[queries; image]`` to ``[B,Q,D]``."""
        q_pos = self.q_pos_embed.to(queries.dtype).unsqueeze(0)
        k_pos = torch.cat([self.q_pos_embed, self.k_pos_embed], dim=0).to(queries.dtype)
        keys_values = torch.cat([queries, image], dim=1)
        query = self._heads(self.query(queries + q_pos))
        key = self._heads(self.key(keys_values + k_pos.unsqueeze(0)))
        value = self._heads(self.value(keys_values))
        context = _plain_attention(
            query, key, value, self.scale, self.eager, eager_divisor=math.sqrt(self.head_dim)
        )
        return context.transpose(1, 2).reshape(queries.shape)


class MPLUGOwl2AbstractorMLP(nn.Module):
    """``w2(ffn_ln(SiLU(w1(x)) * w3(x)))``."""

    def __init__(self, config: MPLUGOwl2AbstractorConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.w2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.w3 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_ln = nn.LayerNorm(config.intermediate_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gated = F.silu(self.w1(hidden_states)) * self.w3(hidden_states)
        return self.w2(self.ffn_ln(gated))


class MPLUGOwl2AbstractorOutput(nn.Module):
    """Output projection with the residual from the normalised queries, then the gated MLP."""

    def __init__(self, config: MPLUGOwl2AbstractorConfig) -> None:
        super().__init__()
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        # nn.LayerNorm's default eps (1e-5), as in the original, not layer_norm_eps.
        self.norm2 = nn.LayerNorm(config.hidden_size)
        self.mlp = MPLUGOwl2AbstractorMLP(config)

    def forward(self, context: torch.Tensor, normed_queries: torch.Tensor) -> torch.Tensor:
        hidden_states = normed_queries + self.out_proj(context)
        return hidden_states + self.mlp(self.norm2(hidden_states))


class MPLUGOwl2AbstractorCrossAttention(nn.Module):
    """``norm1`` on the queries, ``normk`` on the image, attention, output block."""

    def __init__(self, config: MPLUGOwl2AbstractorConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.attention = MPLUGOwl2AbstractorAttention(config, root_config)
        self.output = MPLUGOwl2AbstractorOutput(config)
        self.norm1 = nn.LayerNorm(config.hidden_size)
        self.normk = nn.LayerNorm(config.hidden_size)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(queries)
        context = self.attention(normed, self.normk(image))
        return self.output(context, normed)


class MPLUGOwl2AbstractorLayer(GradientCheckpointingLayer):
    """One abstractor layer (only a cross-attention block)."""

    def __init__(self, config: MPLUGOwl2AbstractorConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.crossattention = MPLUGOwl2AbstractorCrossAttention(config, root_config)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.crossattention(queries, image)


class MPLUGOwl2AbstractorEncoder(nn.Module):
    """The stack of abstractor layers (``encoder.layers``)."""

    def __init__(self, config: MPLUGOwl2AbstractorConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [MPLUGOwl2AbstractorLayer(config, root_config) for _ in range(config.num_hidden_layers)]
        )

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            queries = layer(queries, image)
        return queries


class MPLUGOwl2VisualAbstractor(nn.Module):
    """Compress the ViT output to ``Q`` query tokens, project them, and append ``vit_eos``."""

    def __init__(self, config: MPLUGOwl2AbstractorConfig, root_config: MPLUGOwl2Config) -> None:
        super().__init__()
        language_hidden_size = root_config.hidden_size
        self.query_embeds = nn.Parameter(
            torch.empty(1, config.num_learnable_queries, config.hidden_size)
        )
        self.encoder = MPLUGOwl2AbstractorEncoder(config, root_config)
        self.visual_fc = nn.Linear(config.hidden_size, language_hidden_size)
        self.vit_eos = nn.Parameter(torch.empty(1, 1, language_hidden_size))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map ViT features ``[n, N+1, Dv]`` to LLM tokens ``[n, Q+1, H]``."""
        queries = self.query_embeds.expand(image.shape[0], -1, -1).to(image.dtype)
        queries = self.encoder(queries, image)
        projected = self.visual_fc(queries)
        eos = self.vit_eos.expand(image.shape[0], -1, -1).to(projected.dtype)
        return torch.cat([projected, eos], dim=1)


# ---------------------------------------------------------------------------------------------
# Language model with the Modality-Adaptive Module
# ---------------------------------------------------------------------------------------------


class MPLUGOwl2RMSNorm(nn.Module):
    """RMSNorm computed in float32 and cast back, as LLaMA's."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(dtype)


@dataclass(frozen=True)
class ModalityRouting:
    """Which tokens take which multiway branch, worked out once per forward pass.

    Routing by a boolean mask in every multiway module costs host-device synchronisations
    (``any``/``all`` checks and boolean indexing) in each of the four multiway modules of every
    layer: about a thousand per forward on LLaMA-2-7B, each one stalling a GPU. Here the flat
    token positions of each branch are found once (three synchronisations), and every module then
    gathers and scatters with them, which queues on the device without waiting.

    Attributes:
        uniform: The branch every token takes, or None when the tokens are mixed.
        indices: For mixed tokens, the flat positions (``batch * length`` order) of each branch.
    """

    uniform: int | None
    indices: tuple[torch.Tensor, ...] = ()

    @classmethod
    def from_indicators(cls, modality_indicators: torch.Tensor, num_branches: int = 2) -> Self:
        """Build the routing of ``modality_indicators`` (``[batch, length]``, values < branches)."""
        flat = modality_indicators.reshape(-1)
        counts = torch.bincount(flat, minlength=num_branches).tolist()
        for branch, count in enumerate(counts):
            if count == flat.numel():
                return cls(uniform=branch)
        return cls(
            uniform=None,
            indices=tuple(torch.nonzero(flat == b).squeeze(1) for b in range(num_branches)),
        )


class MultiwayNetwork(nn.Module):
    """Two copies of a module; token ``t`` goes through ``multiway[modality_indicators[t]]``.

    Branch 0 serves text tokens and branch 1 image tokens. Outputs are scattered back in place, so
    the output width may differ from the input width (grouped-query K/V projections).
    """

    def __init__(self, make_module: Callable[[], nn.Module], num_branches: int = 2) -> None:
        super().__init__()
        self.multiway = nn.ModuleList([make_module() for _ in range(num_branches)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        modality_indicators: torch.Tensor | ModalityRouting | None,
    ) -> torch.Tensor:
        if modality_indicators is None:
            return self.multiway[0](hidden_states)
        routing = (
            modality_indicators
            if isinstance(modality_indicators, ModalityRouting)
            else ModalityRouting.from_indicators(modality_indicators, len(self.multiway))
        )
        if routing.uniform is not None:
            return self.multiway[routing.uniform](hidden_states)
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        output: torch.Tensor | None = None
        for branch, positions in zip(self.multiway, routing.indices, strict=True):
            if positions.numel() == 0:
                continue
            routed = branch(flat.index_select(0, positions))
            if output is None:
                output = routed.new_empty((flat.shape[0], routed.shape[-1]))
            output.index_copy_(0, positions, routed)
        if output is None:  # an empty sequence
            return self.multiway[0](hidden_states)
        return output.reshape(*hidden_states.shape[:-1], output.shape[-1])


class MPLUGOwl2RotaryEmbedding(nn.Module):
    """LLaMA RoPE (rotate-half layout); the inverse frequencies are a non-persistent buffer."""

    inv_freq: torch.Tensor
    original_inv_freq: torch.Tensor

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__()
        self.config = config
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        rope_parameters = config.rope_parameters or {}
        self.rope_type: str = str(rope_parameters.get("rope_type") or "default")
        if self.rope_type != "default" and self.rope_type not in ROPE_INIT_FUNCTIONS:
            raise ValueError(
                f"unsupported rope type {self.rope_type!r}; known: "
                f"{sorted({'default', *ROPE_INIT_FUNCTIONS})}"
            )
        inv_freq, self.attention_scaling = self.compute_inverse_frequencies()
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    def compute_inverse_frequencies(self) -> tuple[torch.Tensor, float]:
        """The inverse frequencies (on CPU) and attention scaling of the configured rope type."""
        with torch.device("cpu"):
            if self.rope_type == "default":
                return self.compute_default_rope_parameters(self.config)
            return ROPE_INIT_FUNCTIONS[self.rope_type](self.config, torch.device("cpu"))

    @staticmethod
    def compute_default_rope_parameters(
        config: MPLUGOwl2Config, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, float]:
        """``theta ** (-2i / d)`` for ``i < d/2``, and an attention scaling of 1."""
        base = float((config.rope_parameters or {}).get("rope_theta") or 10000.0)
        dim = _head_dim(config)
        exponent = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        return 1.0 / (base**exponent), 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device).float()
        angles = torch.cat([freqs, freqs], dim=-1)
        cos = angles.cos() * self.attention_scaling
        sin = angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def _head_dim(config: MPLUGOwl2Config) -> int:
    return int(config.head_dim or config.hidden_size // config.num_attention_heads)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(
    query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``[B, heads, T, d]`` queries and keys by per-position ``cos``/``sin``."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return query * cos + _rotate_half(query) * sin, key * cos + _rotate_half(key) * sin


def repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """Repeat each key/value head ``groups`` times: ``[B,nkv,T,d] -> [B,nkv*groups,T,d]``."""
    if groups == 1:
        return states
    batch, heads, length, dim = states.shape
    expanded = states[:, :, None].expand(batch, heads, groups, length, dim)
    return expanded.reshape(batch, heads * groups, length, dim)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matmul-softmax attention with an additive mask and the softmax upcast to float32."""
    groups = int(getattr(module, "num_key_value_groups", 1))
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scores = torch.matmul(query, key.transpose(2, 3))
    head_dim = query.shape[-1]
    # The original divides by sqrt(head_dim); keep its rounding so eager is bit-identical.
    original_scale = scaling == head_dim**-0.5
    scores = scores / math.sqrt(head_dim) if original_scale else scores * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class MPLUGOwl2Attention(nn.Module):
    """Causal self-attention: shared ``q_proj``/``o_proj``, per-modality K/V projections."""

    def __init__(self, config: MPLUGOwl2Config, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = _head_dim(config)
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = int(config.num_key_value_heads or config.num_attention_heads)
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = float(config.attention_dropout or 0.0)
        self.is_causal = True
        bias = config.attention_bias
        width, kv_width = self.num_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, width, bias=bias)
        self.k_proj = MultiwayNetwork(lambda: nn.Linear(config.hidden_size, kv_width, bias=bias))
        self.v_proj = MultiwayNetwork(lambda: nn.Linear(config.hidden_size, kv_width, bias=bias))
        self.o_proj = nn.Linear(width, config.hidden_size, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        modality_indicators: torch.Tensor | ModalityRouting | None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length = hidden_states.shape[:2]
        shape = (batch, length, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states, modality_indicators).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states, modality_indicators).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        query, key = apply_rotary(query, key, cos, sin)
        if past_key_values is not None:
            key, value = past_key_values.update(key, value, self.layer_idx)
        interface: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation or "sdpa", eager_attention_forward
        )
        output, weights = interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = output.reshape(batch, length, -1).contiguous()
        return self.o_proj(output), weights


class MPLUGOwl2MLP(nn.Module):
    """LLaMA's gated MLP, ``down(SiLU(gate(x)) * up(x))``."""

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__()
        bias = bool(getattr(config, "mlp_bias", False))
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))


class MPLUGOwl2DecoderLayer(GradientCheckpointingLayer):
    """Pre-norm decoder layer whose two RMSNorms are multiway (per modality)."""

    def __init__(self, config: MPLUGOwl2Config, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = MPLUGOwl2Attention(config, layer_idx)
        self.mlp = MPLUGOwl2MLP(config)
        eps = config.rms_norm_eps
        self.input_layernorm = MultiwayNetwork(lambda: MPLUGOwl2RMSNorm(config.hidden_size, eps))
        self.post_attention_layernorm = MultiwayNetwork(
            lambda: MPLUGOwl2RMSNorm(config.hidden_size, eps)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        modality_indicators: torch.Tensor | ModalityRouting | None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states, modality_indicators)
        hidden_states, _ = self.self_attn(
            hidden_states,
            modality_indicators,
            position_embeddings,
            attention_mask,
            past_key_values=past_key_values,
            **kwargs,
        )
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states, modality_indicators)
        return residual + self.mlp(hidden_states)


# ---------------------------------------------------------------------------------------------
# Pretrained-model plumbing
# ---------------------------------------------------------------------------------------------


class MPLUGOwl2PreTrainedModel(PreTrainedModel):
    """Initialisation, attention back-ends and loading rules shared by the mPLUG-Owl2 classes."""

    config_class = MPLUGOwl2Config
    config: MPLUGOwl2Config
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = [  # noqa: RUF012
        "MPLUGOwl2DecoderLayer",
        "MPLUGOwl2VisionLayer",
        "MPLUGOwl2AbstractorLayer",
    ]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False
    # Checkpoints written by transformers <= 4.31 carry the (recomputed) RoPE frequencies.
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]  # noqa: RUF012

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, MPLUGOwl2VisionEmbeddings):
            init.normal_(module.cls_token, mean=0.0, std=std)
            init.normal_(module.position_embedding, mean=0.0, std=std)
        elif isinstance(module, MPLUGOwl2VisualAbstractor):
            init.normal_(module.query_embeds, mean=0.0, std=std)
            init.normal_(module.vit_eos, mean=0.0, std=std)
        elif isinstance(module, MPLUGOwl2AbstractorAttention):
            module.reset_position_tables()
        elif isinstance(module, MPLUGOwl2RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, MPLUGOwl2RotaryEmbedding):
            inv_freq, _ = module.compute_inverse_frequencies()
            init.copy_(module.inv_freq, inv_freq)
            init.copy_(module.original_inv_freq, inv_freq)
        else:
            super()._init_weights(module)


def _past_length(cache: Cache | None) -> int:
    return int(cache.get_seq_length()) if cache is not None else 0


def _check_indicators(modality_indicators: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if modality_indicators.shape != shape:
        raise ValueError(
            f"modality_indicators shape {tuple(modality_indicators.shape)} does not match the "
            f"sequence shape {tuple(shape)}"
        )
    if bool(((modality_indicators != 0) & (modality_indicators != 1)).any()):
        bad = sorted(set(modality_indicators.unique().tolist()) - {0, 1})
        raise ValueError(f"modality_indicators must be 0 (text) or 1 (image), got values {bad}")
    return modality_indicators.long()


class MPLUGOwl2Model(MPLUGOwl2PreTrainedModel):
    """The decoder stack with the vision tower and abstractor (checkpoint prefix ``model.``).

    Args:
        config: The model configuration.
    """

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(
            [MPLUGOwl2DecoderLayer(config, i) for i in range(config.num_hidden_layers)]
        )
        self.norm = MPLUGOwl2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = MPLUGOwl2RotaryEmbedding(config)
        self.vision_model = MPLUGOwl2VisionModel(config.vision_config, config)
        self.visual_abstractor = MPLUGOwl2VisualAbstractor(config.abstractor_config, config)
        self.gradient_checkpointing = False
        self._vision_batch_size: int | None = None
        self.post_init()

    @property
    def vision_batch_size(self) -> int | None:
        """Pictures per pass through the vision tower; None (the default) runs them all at once.

        Results do not depend on it. On a CPU, 1 keeps batches as fast per picture as single
        pictures: the matrix products are already large at one picture (1,025 tokens), while a
        batch's transient tensors grow past glibc's mmap threshold (one ViT MLP activation of
        a 256-wide tower is 4 MB at batch 1, 34 MB at batch 8), so each is mapped fresh and
        page-faulted on every use. Measured on 2 cores: the ViT took 73 ms per picture at batch 8
        against 60 ms with this set to 1 (or with malloc tuned as ``artquant score`` does). The
        abstractor and the language model still see the whole batch.

        Raises:
            ValueError: On assignment of anything but None or a positive int.

        Example:
            >>> from artquant_model.testing import tiny_model
            >>> model = tiny_model()
            >>> model.model.vision_batch_size = 1
        """
        return self._vision_batch_size

    @vision_batch_size.setter
    def vision_batch_size(self, value: int | None) -> None:
        positive_int = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if value is not None and not positive_int:
            raise ValueError(f"vision_batch_size must be None or a positive int, got {value!r}")
        self._vision_batch_size = value

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding (``embed_tokens``)."""
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the token embedding (e.g. after resizing the vocabulary)."""
        self.embed_tokens = value  # type: ignore[assignment]

    def _check_images(self, images: torch.Tensor) -> None:
        vision = self.config.vision_config
        expected = (vision.num_channels, vision.image_size, vision.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be a float tensor [n_images, {expected[0]}, {expected[1]}, "
                f"{expected[2]}] (or a list of [frames, ...] tensors), got shape "
                f"{tuple(images.shape)}"
            )
        if not torch.is_floating_point(images):
            raise ValueError(f"images must be floating point, got {images.dtype}")

    def get_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Encode pictures into LLM tokens: vision tower, then abstractor.

        Args:
            images: ``[n_images, 3, S, S]`` preprocessed pixels.

        Returns:
            ``[n_images, Q + 1, hidden_size]`` in the model dtype.

        Raises:
            ValueError: When ``images`` has the wrong shape.
        """
        self._check_images(images)
        step = self._vision_batch_size
        if step is None or images.shape[0] <= step:
            return self.visual_abstractor(self.vision_model(images))
        parts = [self.vision_model(chunk) for chunk in torch.split(images, step)]
        return self.visual_abstractor(torch.cat(parts))

    def encode_images(self, images: ImagesInput) -> list[torch.Tensor]:
        """Encode ``images`` into one ``[tokens, hidden]`` unit per image slot.

        A 4-D tensor gives one unit of ``Q+1`` tokens per picture. A list (or a 5-D tensor) gives
        one unit per element: its ``F`` frames' tokens concatenated in frame order.
        """
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return list(self.get_image_features(images))
        if isinstance(images, torch.Tensor) and images.ndim != 5:
            raise ValueError(
                "images must be [n_images, 3, S, S], [batch, frames, 3, S, S] or a list of "
                f"[frames, 3, S, S] tensors, got shape {tuple(images.shape)}"
            )
        frames = [frame if frame.ndim == 4 else frame.unsqueeze(0) for frame in images]
        if not frames:
            return []
        features = self.get_image_features(torch.cat(frames, dim=0))
        counts = [frame.shape[0] for frame in frames]
        return [chunk.flatten(0, 1) for chunk in torch.split(features, counts, dim=0)]

    def tokens_per_image(self, images: ImagesInput) -> list[int]:
        """The spliced length of each image unit of ``images``, without encoding them."""
        per_picture = self.config.num_image_tokens
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return [per_picture] * images.shape[0]
        return [per_picture * (frame.shape[0] if frame.ndim == 4 else 1) for frame in images]

    def build_multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        images: ImagesInput | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> MultimodalInputs:
        """Splice image features into the token embeddings (see :class:`MultimodalInputs`)."""
        side = check_padding_side(padding_side)
        if input_ids.ndim != 2:
            raise ValueError(
                f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}"
            )
        units = self.encode_images(images) if images is not None else None
        return splice_inputs(
            input_ids,
            units,
            self.embed_tokens,
            attention_mask=attention_mask,
            labels=labels,
            padding_side=side,
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        images: ImagesInput | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        modality_indicators: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        padding_side: str | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Run the decoder; see :meth:`MPLUGOwl2ForCausalLM.forward` for the arguments."""
        cache = past_key_values if past_key_values is not None else kwargs.pop("cache", None)
        kwargs.pop("cache", None)
        kwargs.pop("return_dict", None)
        kwargs.pop("output_attentions", None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache, cache = False, None
        past = _past_length(cache)

        if input_ids is not None:
            if images is not None and past == 0:
                side = check_padding_side(padding_side or _infer_padding_side(attention_mask))
                spliced = self.build_multimodal_inputs(
                    input_ids, images, attention_mask, padding_side=side
                )
                inputs_embeds = spliced.inputs_embeds
                attention_mask = spliced.attention_mask
                modality_indicators = spliced.modality_indicators
                if position_ids is None:
                    position_ids = spliced.position_ids
            else:
                if bool((input_ids == IMAGE_TOKEN_INDEX).any()):
                    raise ValueError(
                        f"input_ids hold image tokens ({IMAGE_TOKEN_INDEX}) but no images were "
                        "given (or a cache is already filled, where steps are text only)"
                    )
                inputs_embeds = self.embed_tokens(input_ids)
        if inputs_embeds is None:  # unreachable after the checks above; narrows the type
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        batch, length = inputs_embeds.shape[:2]
        if modality_indicators is not None:
            modality_indicators = _check_indicators(
                modality_indicators.to(inputs_embeds.device), inputs_embeds.shape[:2]
            )

        if use_cache and cache is None:
            cache = DynamicCache()
        if (
            attention_mask is not None
            and attention_mask.ndim == 2
            and attention_mask.shape != (batch, past + length)
        ):
            raise ValueError(
                f"attention_mask must be [batch, past + length] = [{batch}, {past + length}] "
                f"for the spliced sequence, got {tuple(attention_mask.shape)}"
            )
        if position_ids is None:
            if attention_mask is not None and attention_mask.ndim == 2:
                position_ids = position_ids_from_mask(attention_mask)[:, -length:]
            else:
                position_ids = torch.arange(
                    past, past + length, device=inputs_embeds.device
                ).unsqueeze(0)

        causal_mask = create_causal_mask(
            self.config, inputs_embeds, attention_mask, cache, position_ids=position_ids
        )
        position_embeddings = self.rotary_emb(inputs_embeds, position_ids)
        hidden_states = inputs_embeds
        routing = (
            None
            if modality_indicators is None
            else ModalityRouting.from_indicators(modality_indicators)
        )
        all_hidden: list[torch.Tensor] = []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            hidden_states = layer(
                hidden_states,
                routing,
                position_embeddings,
                causal_mask,
                past_key_values=cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden.append(hidden_states)
        extra: dict[str, Any] = {_CACHE_FIELD: cache if use_cache else None}
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            **extra,
        )


def _infer_padding_side(attention_mask: torch.Tensor | None) -> str:
    """Left when the mask shows left padding (a row starts with 0 and every row ends with 1)."""
    if attention_mask is None or attention_mask.ndim != 2 or attention_mask.shape[1] == 0:
        return "right"
    left = bool((attention_mask[:, 0] == 0).any()) and bool((attention_mask[:, -1] != 0).all())
    return "left" if left else "right"


def _keep_last(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    if isinstance(logits_to_keep, int):
        if logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {logits_to_keep}")
        return hidden_states if logits_to_keep == 0 else hidden_states[:, -logits_to_keep:]
    return hidden_states[:, logits_to_keep]


class MPLUGOwl2ForCausalLM(MPLUGOwl2PreTrainedModel, GenerationMixin):
    """mPLUG-Owl2 with its LM head: the model of Q-Align, OneAlign, DeQA-Score and ArtQuant.

    Args:
        config: The model configuration.

    Example:
        >>> from artquant_model.testing import tiny_model
        >>> model = tiny_model()
        >>> ids = torch.tensor([[1, 5, -200, 7, 9]])
        >>> images = torch.zeros(1, 3, 28, 28)
        >>> out = model(input_ids=ids, images=images)
        >>> out.logits.shape[1] == ids.shape[1] - 1 + model.config.num_image_tokens
        True
    """

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}  # noqa: RUF012

    def __init__(self, config: MPLUGOwl2Config) -> None:
        super().__init__(config)
        self.model = MPLUGOwl2Model(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding (``model.embed_tokens``)."""
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the token embedding (e.g. after resizing the vocabulary)."""
        self.model.embed_tokens = value  # type: ignore[assignment]

    def get_output_embeddings(self) -> nn.Module:
        """The LM head (``lm_head``)."""
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        """Replace the LM head."""
        self.lm_head = value  # type: ignore[assignment]

    def get_decoder(self) -> MPLUGOwl2Model:
        """The decoder stack with the vision tower and abstractor (``model``)."""
        return self.model

    def get_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Vision tower plus abstractor: ``[n, 3, S, S] -> [n, Q + 1, hidden]``.

        Args:
            images: Preprocessed pixels.

        Returns:
            The image tokens that replace one -200 each.

        Raises:
            ValueError: When ``images`` has the wrong shape.

        Example:
            >>> from artquant_model.testing import tiny_model
            >>> tiny_model().get_image_features(torch.zeros(2, 3, 28, 28)).shape
            torch.Size([2, 9, 64])
        """
        return self.model.get_image_features(images)

    def build_multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        images: ImagesInput | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> MultimodalInputs:
        """Splice the images into the token embeddings, as the original does before the LLM.

        Each -200 in a row is replaced, left to right, by the tokens of the next image (one
        counter over the batch); a row without -200 still consumes one image, contributing no
        tokens. Rows of unequal spliced length are padded on ``padding_side``. The attention mask
        and labels are spliced in place (image positions take the mask value of their -200 and
        label -100) and position ids are ``cumsum(mask) - 1``.

        Args:
            input_ids: ``[batch, length]`` with -200 where images go.
            images: ``[n_images, 3, S, S]``, or a list of ``[frames, 3, S, S]`` (one per slot).
            attention_mask: ``[batch, length]`` 0/1, or ``None``.
            labels: ``[batch, length]``, or ``None``.
            padding_side: ``"right"`` (the original) or ``"left"``.

        Returns:
            :class:`MultimodalInputs` that ``forward(inputs_embeds=..., ...)`` accepts.

        Raises:
            ValueError: On a bad ``padding_side``, wrong image shapes, or when the number of
                images does not match the -200 tokens.

        Example:
            >>> from artquant_model.testing import tiny_model
            >>> model = tiny_model()
            >>> mm = model.build_multimodal_inputs(torch.tensor([[1, -200, 5]]),
            ...                                    torch.zeros(1, 3, 28, 28))
            >>> mm.modality_indicators.tolist()
            [[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]]
        """
        return self.model.build_multimodal_inputs(
            input_ids, images, attention_mask, labels, padding_side
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        images: ImagesInput | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        modality_indicators: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        padding_side: str | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Splice images into the prompt and run the language model.

        Args:
            input_ids: ``[batch, length]`` token ids, -200 where an image goes.
            images: ``[n_images, 3, S, S]`` pixels, or a list of ``[frames, 3, S, S]`` tensors
                (the multi-frame path: one element per -200, its frames' tokens concatenated).
            attention_mask: ``[batch, length]`` 0/1 over ``input_ids`` (spliced here), or over
                the spliced sequence when ``inputs_embeds`` is given. Position ids are derived
                from it, so left-padded rows equal their batch-of-one result.
            position_ids: Explicit positions of the spliced sequence.
            past_key_values: A ``DynamicCache``; once filled, steps are text only.
            inputs_embeds: Pre-spliced embeddings (e.g. from :meth:`build_multimodal_inputs`).
            modality_indicators: ``[batch, length]`` 0 text / 1 image, with ``inputs_embeds``.
            labels: Labels of ``input_ids`` (spliced here, image positions -100) or of the
                spliced sequence with ``inputs_embeds``; gives ``.loss``, the next-token CE.
            use_cache: Return a cache for further steps.
            output_hidden_states: Also return the embeddings, every layer's output but the
                last, and the final-norm output.
            logits_to_keep: If > 0, only the last ``logits_to_keep`` positions get logits.
            padding_side: Side on which rows of unequal spliced length are padded; by default
                left when ``attention_mask`` shows left padding, else right (the original).
            **kwargs: Passed to the attention back-end (e.g. flash-attention arguments).

        Returns:
            ``CausalLMOutputWithPast`` with ``.logits`` over the spliced length.

        Raises:
            ValueError: On inconsistent inputs (image tokens without images, image counts,
                mask shapes, indicator values).
        """
        cache = past_key_values if past_key_values is not None else kwargs.pop("cache", None)
        kwargs.pop("cache", None)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if (
            input_ids is not None
            and images is not None
            and _past_length(cache) == 0
            and labels is not None
        ):
            side = check_padding_side(padding_side or _infer_padding_side(attention_mask))
            spliced = self.model.build_multimodal_inputs(
                input_ids, images, attention_mask, labels, padding_side=side
            )
            input_ids, images = None, None
            inputs_embeds = spliced.inputs_embeds
            attention_mask = spliced.attention_mask
            modality_indicators = spliced.modality_indicators
            labels = spliced.labels  # type: ignore[assignment]
            position_ids = spliced.position_ids if position_ids is None else position_ids
        outputs = self.model(
            input_ids=input_ids,
            images=images,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            inputs_embeds=inputs_embeds,
            modality_indicators=modality_indicators,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            padding_side=padding_side,
            **kwargs,
        )
        hidden_states = _keep_last(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            if logits.shape[:2] != labels.shape:
                raise ValueError(
                    f"labels shape {tuple(labels.shape)} does not match the logits positions "
                    f"{tuple(logits.shape[:2])} (labels need logits_to_keep=0)"
                )
            loss = _next_token_loss(logits, labels.to(logits.device), num_items_in_batch)
        extra: dict[str, Any] = {_CACHE_FIELD: getattr(outputs, _CACHE_FIELD)}
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, **extra
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        images: ImagesInput | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """First step: the whole prompt with its images; later cached steps: the new text tokens.

        ``input_ids`` and ``attention_mask`` are kept unspliced by ``generate`` (so the returned
        sequence holds the prompt with its -200 tokens); the spliced mask of a cached step is
        rebuilt from them. Without a cache every step re-splices the whole sequence, so cached and
        uncached greedy decoding agree.
        """
        cache = past_key_values if past_key_values is not None else kwargs.get("cache")
        if inputs_embeds is not None:
            raise ValueError(
                "generate() takes input_ids (with -200 where images go) and images; "
                "inputs_embeds is not supported"
            )
        for key in (
            "cache",
            "position_ids",
            "cache_position",
            "next_sequence_length",
            "is_first_iteration",
            "token_type_ids",
        ):
            kwargs.pop(key, None)
        model_inputs: dict[str, Any] = dict(kwargs)
        past = _past_length(cache)
        if past == 0:
            model_inputs.update(
                input_ids=input_ids,
                images=images,
                attention_mask=attention_mask,
                padding_side="left",
            )
        else:
            slots = self.model.tokens_per_image(images) if images is not None else []
            spliced_mask = splice_attention_mask(input_ids, attention_mask, slots, "left")
            new_tokens = spliced_mask.shape[1] - past
            if new_tokens <= 0:
                raise ValueError(
                    f"the cache holds {past} positions but the spliced sequence has only "
                    f"{spliced_mask.shape[1]}"
                )
            model_inputs.update(
                input_ids=input_ids[:, -new_tokens:],
                attention_mask=spliced_mask.to(input_ids.device),
            )
        model_inputs["past_key_values"] = cache
        return model_inputs


def _next_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None
) -> torch.Tensor:
    """Mean next-token cross-entropy in float32, ignoring -100 (or summed / ``num_items``)."""
    shifted_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1)
    if num_items_in_batch is None:
        return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)
    total = F.cross_entropy(
        shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total / num_items_in_batch


def _register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` resolve ``mplug_owl2``."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    AutoConfig.register(MPLUGOwl2Config.model_type, MPLUGOwl2Config, exist_ok=True)
    AutoModel.register(MPLUGOwl2Config, MPLUGOwl2Model, exist_ok=True)
    AutoModelForCausalLM.register(MPLUGOwl2Config, MPLUGOwl2ForCausalLM, exist_ok=True)


_register_auto_classes()
