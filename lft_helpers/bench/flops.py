"""FLOPs counted from a model's shapes: per review for evaluation, per step for training.

Only matrix products count (linear layers and attention's QK^T and AV), 2 FLOPs per
multiply-add, as `torch.utils.flop_counter.FlopCounterMode` counts them; tests hold both counts
to that counter on tiny models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Query, key and value projections per architecture: which of them need a gradient decides
# which of attention's backward products run.
QKV_NAMES = {
    "distilbert": ("q_lin", "k_lin", "v_lin"),
    "bert": ("query", "key", "value"),
    "roberta": ("query", "key", "value"),
    "xlm-roberta": ("query", "key", "value"),
    "electra": ("query", "key", "value"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj"),
}


# --- evaluation: the forward pass of a merged model --------------------------------------------


def matmul_shape(model) -> dict:
    """Weights used per token (linear layers inside numbered blocks), per review, and shape."""
    import torch

    per_token = per_review = 0
    blocks = set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        numbered = [i for i, p in enumerate(parts) if p.isdigit()]
        if numbered:
            per_token += module.weight.numel()
            blocks.add(".".join(parts[: numbered[0] + 1]))
        else:  # pooler and classification head: applied to the first token only
            per_review += module.weight.numel()
    return {
        "per_token": per_token,
        "per_review": per_review,
        "layers": len(blocks),
        "hidden": int(model.config.hidden_size),
    }


def review_flops(shape: dict, length) -> np.ndarray:
    """Forward FLOPs per review: 2 per weight per token, plus QK^T and AV (4 L^2 d per layer)."""
    length = np.asarray(length, dtype=np.float64)
    attention = 4.0 * shape["layers"] * shape["hidden"] * length**2
    return 2.0 * shape["per_token"] * length + attention + 2.0 * shape["per_review"]


def padded_flops(shape: dict, lengths, batch_size: int):
    """FLOPs the sorted, dynamically padded batches compute (each padded to its longest)."""
    order = np.sort(lengths)
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        yield float(review_flops(shape, np.full(len(chunk), chunk.max())).sum())


# --- training: forward and backward of one step ------------------------------------------------


@dataclass(frozen=True)
class StepCost:
    """FLOPs of one training step on reviews of lengths L (padded lengths for what is computed,
    real lengths for what is needed): per_token * sum(L) + per_review * reviews
    + attention * sum(L^2).

    Each counts the forward product, the input-gradient product where the input needs a
    gradient (everything after the first trained weight) and the weight-gradient product only
    for trained weights; attention's QK^T and AV the same way.
    """

    per_token: int
    per_review: int
    attention: int

    def flops(self, lengths) -> float:
        lengths = np.asarray(lengths, dtype=np.float64)
        return float(
            self.per_token * lengths.sum()
            + self.per_review * len(lengths)
            + self.attention * (lengths**2).sum()
        )


def linear_cost(*, input_needs_grad: bool, weight_trains: bool, in_f: int, out_f: int) -> int:
    """Forward, input-gradient and weight-gradient products of one linear layer, per row."""
    return 2 * in_f * out_f * (1 + int(input_needs_grad) + int(weight_trains))


def attention_cost(*, q: bool, k: bool, v: bool, qk_width: int, v_width: int) -> int:
    """Per squared length: QK^T and AV, then the backward products whose result is needed:
    dP = dO V^T (for Q or K), dV = P^T dO, dQ = dS K and dK = dS^T Q."""
    return 2 * (qk_width * (1 + int(q) + int(k)) + v_width * (1 + int(q or k) + int(v)))


def training_step_cost(model) -> StepCost:
    """The model's `StepCost`, from its layers' shapes and which weights train.

    A short forward pass (one review of three tokens, in eval mode so dropout draws nothing)
    records, for each linear layer that runs, its shape, whether its input needs a gradient and
    whether it runs per token or once per review (pooler, head); and, for each attention, which
    of its query, key and value need one. That is what autograd will compute in the step.
    """
    import torch

    length = 3
    linears, projections = [], {}
    names = QKV_NAMES.get(getattr(model.config, "model_type", ""))

    def on_linear(module, inputs, output):
        rows = inputs[0].numel() // module.in_features
        linears.append((module, inputs[0].requires_grad, rows == length))

    def on_projection(parent: str, role: int):
        def hook(module, inputs, output):
            projections.setdefault(parent, {})[role] = (output.requires_grad, output.shape[-1])

        return hook

    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(on_linear))
        parent, _, short = name.rpartition(".")
        if names and short in names:
            hooks.append(module.register_forward_hook(on_projection(parent, names.index(short))))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.enable_grad():
            ids = torch.ones((1, length), dtype=torch.long, device=device)
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    per_token = per_review = 0
    for module, needs_grad, token_wise in linears:
        cost = linear_cost(
            input_needs_grad=needs_grad,
            weight_trains=module.weight.requires_grad,
            in_f=module.in_features,
            out_f=module.out_features,
        )
        if token_wise:
            per_token += cost
        else:
            per_review += cost
    attention = 0
    for roles in projections.values():
        (q, qk_width), (k, _), (v, v_width) = roles[0], roles[1], roles[2]
        attention += attention_cost(q=q, k=k, v=v, qk_width=qk_width, v_width=v_width)
    if not projections:  # an architecture not in QKV_NAMES: every attention needs its gradients
        hidden, layers = model.config.hidden_size, model.config.num_hidden_layers
        attention = layers * attention_cost(q=True, k=True, v=True, qk_width=hidden, v_width=hidden)
    return StepCost(per_token=per_token, per_review=per_review, attention=attention)


def add_flop_rates(result: dict, *, useful: float, executed: float) -> dict:
    """GFLOP/s on the real tokens, and on all tokens computed (padding included)."""
    return {
        **result,
        "gflops_useful": round(useful / result["seconds"] / 1e9, 2),
        "gflops_executed": round(executed / result["seconds"] / 1e9, 2),
    }
