"""Pure inference on a merged model: weights cast once, and attention one review at a time.

On a CPU, PyTorch's fused attention kernel runs its small per-head products far below the
machine's matmul peak when heads are narrow (MiniLM's are 32 wide; docs/performance.md has the
measurements). Attending one review at a time instead keeps each
review's score matrix in cache, lets each product run as one batched bf16 matmul, and masks a
review's padding by filling only its padding columns. It is registered with transformers'
attention interface and used only for inference on CPUs without AMX; all else goes to the stock
SDPA. On AMX, SDPA's fused kernel measured faster for MiniLM and level for DistilBERT-base.
"""

from __future__ import annotations

import time

from .evaluation import predict_logits
from .runtime import cpu_flags, device_name, resolve_precision, torch_dtype

ROWWISE = "lft_rowwise"


def key_lengths(mask, kv_length: int) -> list[int] | None:
    """Keys each review attends to, when its mask is a padding prefix; None otherwise."""
    import torch

    valid = mask[:, 0, 0, :]
    lengths = valid.sum(-1)
    prefix = torch.arange(kv_length, device=mask.device)[None, :] < lengths[:, None]
    same_for_every_query = torch.equal(mask, valid[:, None, None, :].expand_as(mask))
    if not (same_for_every_query and torch.equal(valid, prefix)):
        return None
    return lengths.tolist()


def rowwise_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs
):
    """Softmax attention, one review at a time; same arguments and result as transformers' SDPA."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    boolean = attention_mask is None or attention_mask.dtype == torch.bool
    special = getattr(module, "is_causal", False) or key.shape[1] != query.shape[1]
    if module.training or query.device.type != "cpu" or not boolean or special:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    query = query * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    lengths = None if attention_mask is None else key_lengths(attention_mask, key.shape[2])
    out = torch.empty_like(query)
    for row in range(query.shape[0]):
        scores = torch.matmul(query[row], key[row].transpose(-1, -2))
        lowest = torch.finfo(scores.dtype).min  # bf16 under autocast, whatever the inputs
        if lengths is not None:
            # Only the padding columns are filled. Slicing them off instead would give every
            # review its own matmul shape, and oneDNN compiles a kernel for each new shape.
            scores[..., lengths[row] :] = lowest
        elif attention_mask is not None:
            scores = scores.masked_fill(~attention_mask[row], lowest)
        out[row] = torch.matmul(torch.softmax(scores, dim=-1), value[row])
    return out.transpose(1, 2).contiguous(), None


def register_rowwise_attention() -> str:
    """Make `ROWWISE` a valid `attn_implementation` (with SDPA's boolean masks); idempotent."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    # Its per-review loop depends on the data: a compiled model calls it eagerly, between graphs.
    AttentionInterface.register(ROWWISE, torch.compiler.disable(rowwise_attention))
    AttentionMaskInterface.register(ROWWISE, sdpa_mask)
    return ROWWISE


def inference_batch_size(device: str) -> int:
    """Reviews per batch for pure inference: on a CPU, small batches keep each layer's
    activations in cache (docs/performance.md has the measurements); GPUs want more."""
    return 16 if device == "cpu" else 64


def cast_weights(model, precision: str = "auto"):
    """The model with its weights in `precision`, so no per-call autocast is needed."""
    dtype = torch_dtype(resolve_precision(precision))
    return model.eval().to(device=device_name(), dtype=dtype)


def rowwise_attention_pays(device: str) -> bool:
    """Whether row-wise attention beats SDPA for inference here: on a CPU without AMX.

    Measured with AVX-512 BF16 (AMD EPYC: 1.02-1.19x). With AMX, in two interleaved probes,
    SDPA's fused kernel was 1.14x and 1.27x faster for MiniLM, and DistilBERT-base came out
    within 1.07x either way (docs/performance.md). CPUs with AVX2 only were not measured; they
    keep row-wise, which computes nothing that SDPA does not.
    """
    return device == "cpu" and "amx_bf16" not in cpu_flags()


def use_rowwise_attention(model) -> bool:
    """Switch a transformers model to `rowwise_attention` where it pays (a CPU without AMX);
    False where the model's own attention stays."""
    if not rowwise_attention_pays(device_name()) or not hasattr(model, "set_attn_implementation"):
        return False
    try:
        model.set_attn_implementation(register_rowwise_attention())
    except (ValueError, ImportError):  # a model that only knows its own attention
        return False
    return True


def compile_for_inference(model, sample, tokenizer, batch_size: int):
    """The model compiled with frozen weights, and the seconds the compile took on `sample`;
    the model unchanged and the reason where torch.compile fails here (no C++ compiler, say)."""
    import torch

    start = time.perf_counter()
    try:
        compiled = torch.compile(model, dynamic=True, options={"freezing": True})
        predict_logits(compiled, sample, tokenizer, batch_size)
    except Exception as err:  # an optimisation only: any failure leaves the eager model
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        return model, {"compiled": False, "compile_error": f"{type(err).__name__}: {first_line}"}
    return compiled, {"compiled": True, "compile_s": round(time.perf_counter() - start, 2)}


def prepare_inference_model(
    model,
    sample,
    tokenizer,
    precision: str = "auto",
    *,
    compile: bool = False,
    batch_size: int | None = None,
) -> tuple:
    """A merged model made ready for pure inference, and a record of what was done.

    Casts the weights (in place: pass a model used for nothing else, such as a merged copy),
    switches to row-wise attention on a CPU without AMX and, if `compile`, compiles with frozen
    weights so the compiler can fuse bias, GELU and LayerNorm into their neighbours. Compiling
    is off by default because it has not paid off where measured (`bench --compile` measures
    it; see docs/performance.md). The compile runs here, on the `sample` reviews, so its one-off
    cost stays out of any throughput.
    """
    batch_size = batch_size or inference_batch_size(device_name())
    model = cast_weights(model, precision)
    info = {
        "weights": resolve_precision(precision),
        "attention": ROWWISE if use_rowwise_attention(model) else model.config._attn_implementation,
        "batch_size": batch_size,
        "compiled": False,
    }
    if compile:
        model, compiled = compile_for_inference(model, sample, tokenizer, batch_size)
        info.update(compiled)
    return model, info
