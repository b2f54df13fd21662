"""Head+tail truncation: a long review keeps its first and its last tokens (Sun et al. 2019).

Reviews often state the verdict at the end, which head-only truncation cuts off. This module
sits at the data layer: it only tokenizes.
"""

from __future__ import annotations


def keep_head_tail(encoding: dict, max_length: int, head_tokens: int) -> dict:
    """One review's untruncated encoding (with `special_tokens_mask`) cut to `max_length`:
    the leading special tokens, the first `head_tokens` content tokens, the last content tokens
    that fit, and the trailing special tokens. A review that fits is returned unchanged.

    Every per-token field (`input_ids`, `attention_mask`, ...) is cut at the same positions.
    """
    mask = encoding["special_tokens_mask"]
    fields = {k: v for k, v in encoding.items() if k != "special_tokens_mask"}
    n = len(mask)
    if n <= max_length:
        return fields
    # The mask marks only the tokens the tokenizer adds ([CLS], [SEP]), never text that
    # happens to read "[SEP]", so the content is exactly what lies between them.
    lead = mask.index(0)
    trail = mask[::-1].index(0)
    tail = max_length - lead - trail - head_tokens
    if tail < 1:
        raise ValueError(
            f"head_tokens={head_tokens} leaves no room for the tail within max_length="
            f"{max_length} ({lead + trail} special tokens)"
        )
    cut = lead + head_tokens
    return {k: v[:cut] + v[n - trail - tail :] for k, v in fields.items()}


def encode_head_tail(tokenizer, texts, max_length: int, head_tokens: int) -> dict:
    """Encode `texts` like `tokenizer(texts, truncation=True, max_length=...)`, but a review
    longer than `max_length` keeps its first `head_tokens` and its last tokens instead of
    only its first ones. Batched: one tokenizer call, then list slicing per review."""
    # verbose=False: long reviews are expected here, they are the point.
    enc = tokenizer(list(texts), truncation=False, return_special_tokens_mask=True, verbose=False)
    keys = [k for k in enc if k != "special_tokens_mask"]
    rows = [
        keep_head_tail({k: enc[k][i] for k in enc}, max_length, head_tokens)
        for i in range(len(enc["input_ids"]))
    ]
    return {k: [row[k] for row in rows] for k in keys}
