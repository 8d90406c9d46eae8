"""MPNet's forward pass in numpy (float32): what transformers' ``MPNetModel`` computes, followed by
the accurate part's mean pooling, linear head and softmax.

Mirrors ``transformers.models.mpnet.modeling_mpnet`` in eval mode (no dropout): position ids
counted from the padding id, word + position embeddings and a LayerNorm, then encoder layers
(self-attention with a relative-position bias added to the scores, residual + LayerNorm, a GELU
feed-forward block, residual + LayerNorm). The bias is looked up once per batch from a shared
table of 32 buckets; the fine-tuned top layers bring their own table. Weights are loaded by
:mod:`classifiers.mpnet`; this module only does the arithmetic.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import erf

Array = np.ndarray[Any, Any]
NUM_BUCKETS = 32
MAX_DISTANCE = 128
_MASKED = np.float32(np.finfo(np.float32).min)  # as transformers' additive attention mask
GELU_ROWS = 256  # rows of the feed-forward activations per GELU task


@dataclass(frozen=True)
class Layer:
    """One encoder layer; matrices as published, (out, in), q, k and v stacked into one."""

    qkv_w: Array
    qkv_b: Array
    o_w: Array
    o_b: Array
    attn_norm_w: Array
    attn_norm_b: Array
    up_w: Array
    up_b: Array
    down_w: Array
    down_b: Array
    out_norm_w: Array
    out_norm_b: Array


@dataclass(frozen=True)
class Stage:
    """Consecutive layers that share one relative-position table (``NUM_BUCKETS`` x heads)."""

    layers: tuple[Layer, ...]
    position_table: Array


@dataclass(frozen=True)
class Network:
    """Embeddings, the encoder in stages (published, then fine-tuned) and the linear head."""

    word_embeddings: Array
    position_embeddings: Array
    embed_norm_w: Array
    embed_norm_b: Array
    stages: tuple[Stage, ...]
    head_w: Array
    head_b: Array
    heads: int
    eps: float
    pad_id: int


def relative_position_bucket(relative_position: Array) -> Array:
    """transformers' ``MPNetEncoder.relative_position_bucket`` (32 buckets, max distance 128):
    exact below 8 tokens, then logarithmic, separately for each direction."""
    n = -relative_position.astype(np.int64)
    half = NUM_BUCKETS // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    # float32 like torch (n.float()), so bucket edges round the same way
    scaled = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
    scaled = scaled / np.float32(math.log(MAX_DISTANCE / max_exact)) * np.float32(half - max_exact)
    large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
    return ret + np.where(n < max_exact, n, large)


def position_bias(table: Array, length: int) -> Array:
    """(1, heads, length, length) scores to add, from (buckets, heads) ``table``."""
    positions = np.arange(length)
    bucket = relative_position_bucket(positions[None, :] - positions[:, None])
    return np.ascontiguousarray(table[bucket].transpose(2, 0, 1))[None]


def layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred: Array = x - mean
    var = np.square(centred).mean(axis=-1, keepdims=True)
    centred /= np.sqrt(var + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


def _gelu_rows(x: Array) -> None:
    half = np.float32(0.5) * x
    x *= np.float32(1.0 / math.sqrt(2.0))
    erf(x, out=x)
    x += np.float32(1.0)
    x *= half


def gelu(x: Array, pool: Executor | None = None) -> Array:
    """Exact GELU, x * Φ(x) with erf (transformers' "gelu"), in place, on 2-D ``x``. scipy's erf
    runs on one core and releases the GIL, so blocks of rows go to ``pool``'s threads."""
    if pool is None or len(x) <= GELU_ROWS:
        _gelu_rows(x)
    else:
        starts = range(0, len(x), GELU_ROWS)
        for _ in pool.map(lambda start: _gelu_rows(x[start : start + GELU_ROWS]), starts):
            pass
    return x


def softmax(x: Array) -> Array:
    """Softmax over the last axis, in place."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _linear(x: Array, weight: Array, bias: Array) -> Array:
    out = x @ weight.T
    out += bias
    return out


def attention(x: Array, mask: Array, bias: Array, layer: Layer, heads: int) -> Array:
    """Self-attention of (batch, tokens, hidden) ``x``; ``mask`` is (batch, 1, 1, tokens) additive,
    ``bias`` (1, heads, tokens, tokens). Returns the heads' context, (batch * tokens, hidden),
    before the output projection."""
    batch, tokens, hidden = x.shape
    size = hidden // heads
    qkv = _linear(x.reshape(-1, hidden), layer.qkv_w, layer.qkv_b)
    qkv = qkv.reshape(batch, tokens, 3, heads, size).transpose(2, 0, 3, 1, 4)
    query, key, value = qkv[0] * np.float32(1.0 / math.sqrt(size)), qkv[1], qkv[2]
    scores = np.matmul(query, key.transpose(0, 1, 3, 2))
    scores += bias
    scores += mask
    context: Array = np.matmul(softmax(scores), value)
    return context.transpose(0, 2, 1, 3).reshape(batch * tokens, hidden)


def encoder_layer(
    x: Array, mask: Array, bias: Array, layer: Layer, net: Network, pool: Executor | None = None
) -> Array:
    """One ``MPNetLayer``: attention, residual + LayerNorm, GELU feed-forward, residual +
    LayerNorm."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    attended = _linear(attention(x, mask, bias, layer, net.heads), layer.o_w, layer.o_b)
    attended += flat
    attended = layer_norm(attended, layer.attn_norm_w, layer.attn_norm_b, net.eps)
    hidden = gelu(_linear(attended, layer.up_w, layer.up_b), pool)
    out = _linear(hidden, layer.down_w, layer.down_b)
    out += attended
    return layer_norm(out, layer.out_norm_w, layer.out_norm_b, net.eps).reshape(shape)


def embed(ids: Array, net: Network) -> Array:
    """Word + position embeddings and their LayerNorm; positions count real tokens from
    ``pad_id + 1`` and padding sits at ``pad_id`` (``create_position_ids_from_input_ids``)."""
    real = (ids != net.pad_id).astype(np.int64)
    positions = np.cumsum(real, axis=1) * real + net.pad_id
    x = net.word_embeddings[ids] + net.position_embeddings[positions]
    return layer_norm(x, net.embed_norm_w, net.embed_norm_b, net.eps)


def forward(net: Network, ids: Array, attention_mask: Array, pool: Executor | None = None) -> Array:
    """Class probabilities (batch x labels, float32) for (batch, tokens) token ids padded with
    ``pad_id`` and their 0/1 attention mask: the encoder, mean pooling over real tokens, the
    head and a softmax. ``pool``: threads for the GELU (matrix products use BLAS's own)."""
    x = embed(ids, net)
    length = ids.shape[1]
    mask = np.where(attention_mask[:, None, None, :] > 0, np.float32(0), _MASKED)
    for stage in net.stages:
        bias = position_bias(stage.position_table, length)
        for layer in stage.layers:
            x = encoder_layer(x, mask, bias, layer, net, pool)
    weights = attention_mask.astype(np.float32)[:, :, None]
    pooled = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), np.float32(1.0))
    return softmax(_linear(pooled, net.head_w, net.head_b))
