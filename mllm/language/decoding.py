"""Decoding in one place: token filters and sampling, text generation from a prompt (`extend`), batched caption
decoding (greedy or sampled) with the key/value cache and per-row stopping (beam search: `beams.py`), teacher-forced
log-probabilities of given tokens, and where each decoded token looked in the prefix (attention maps).

A "decoder" here is a GPT (`mllm.language.gpt.GPT`) with an optional prefix of embeddings [B, P, D] (image
tokens for the captioner) before a begin token. Every sequence is [prefix] BOS t_1 ... t_L; the returned
tokens are t_1 ... t_L, each row ending at its first end token (later positions hold the end token and are
masked out).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

NEG_INF = float("-inf")


class PrefixAttention(NamedTuple):
    """Where each generated token looked in the prefix (the image tokens), per layer.

    maps [B, layers, L, P]: for token t, the self-attention of the position that predicted it (BOS for the
    first, then the token before it) to the P prefix positions, averaged over heads and renormalised to sum to
    one over the prefix. mass [B, layers, L]: the share of that position's attention that went to the prefix
    before renormalising. `combined` averages the maps over layers.
    """

    maps: Tensor
    mass: Tensor

    @property
    def combined(self) -> Tensor:
        """[B, L, P]: the mean over layers of the per-layer maps (each sums to one over the prefix)."""
        return self.maps.mean(dim=1)


def prefix_attention(cache, prefix_len: int, num_tokens: int) -> PrefixAttention:
    """A cache that recorded its attention (`DecoderCache.record_attention`) -> the maps of the first
    `num_tokens` tokens after the prefix and begin token (query positions prefix_len .. + num_tokens - 1)."""
    if prefix_len == 0:
        raise ValueError("no prefix to attend to: attention maps need image tokens (a blind model has none)")
    layers = []
    for self_cache, _ in cache.layers:
        if not self_cache.weights:
            raise ValueError("the cache recorded no attention: call cache.record_attention() before decoding")
        rows = torch.cat([w[..., :prefix_len] for w in self_cache.weights], dim=2)  # [B, H, queries, P]
        layers.append(rows[:, :, prefix_len : prefix_len + num_tokens].mean(dim=1))  # [B, L, P]
    weights = torch.stack(layers, dim=1).float()  # [B, layers, L, P]
    mass = weights.sum(-1)
    return PrefixAttention(weights / mass.clamp_min(1e-12)[..., None], mass)


def attention_of(gpt, prefix: Tensor, tokens: Tensor, bos_id: int) -> PrefixAttention:
    """The prefix attention of given tokens [B, L] (e.g. a beam search's captions), from one teacher-forced
    pass: equal to what decoding them one token at a time with the cache records."""
    cache = gpt.decoder.new_cache().record_attention()
    with torch.no_grad():
        gpt(teacher_inputs(tokens, bos_id), prefix=prefix, cache=cache)
    return prefix_attention(cache, prefix.shape[1], tokens.shape[1])


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """logits [B, V] -> logits [B, V] with the tokens that may not be sampled set to -inf.

    `top_k`: keep the k largest of each row. `top_p` (nucleus): keep the smallest set of most likely
    tokens whose probability mass reaches p. Both given: top-k first, then top-p on what is left.
    """
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # the mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)
    return logits


def sample(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """logits [B, V] -> next ids [B, 1]; temperature 0 is greedy (argmax), else top-k/top-p filtering
    (`filter_logits`) of logits / temperature. A temperature below float32's smallest normal number is its
    limit, greedy: in float32 it would be 0 or lose its precision."""
    if temperature < torch.finfo(torch.float32).tiny:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()
    # shifted so that the largest is 0 before dividing: a tiny temperature then sends the others to -inf, a
    # one-hot row, instead of overflowing every logit to +-inf (NaN probabilities); softmax is shift-invariant
    logits = logits - logits.amax(dim=-1, keepdim=True)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)
    # sample where the generator lives (a CPU generator keeps runs reproducible across devices)
    on = probs if generator is None else probs.to(generator.device)
    return torch.multinomial(on, 1, generator=generator).to(probs.device)


def ban_tokens(logits: Tensor, banned: tuple[int, ...]) -> Tensor:
    """Tokens that may never be produced (a begin or unknown token) get -inf logits."""
    return logits.index_fill(-1, torch.tensor(banned, device=logits.device), NEG_INF) if banned else logits


def repeat_mask(history: Tensor, n: int, vocab: int) -> Tensor:
    """history [R, t] (the tokens decoded so far) -> bool [R, V]: True at each token that would repeat an n-gram
    already in its row (the row's last n - 1 tokens were seen before, followed by that token). n = 0: none."""
    r, t = history.shape
    mask = torch.zeros(r, vocab, dtype=torch.bool, device=history.device)
    if n <= 0 or t < n:
        return mask
    grams = history.unfold(1, n, 1)  # [R, t - n + 1, n]: every n-gram so far
    seen = (grams[..., :-1] == history[:, t - n + 1 :, None].transpose(1, 2)).all(-1)  # its first n-1 = the tail
    hits = torch.zeros(r, vocab, dtype=torch.long, device=history.device).scatter_add_(1, grams[..., -1], seen.long())
    return hits > 0


def check_room(gpt, prefix_len: int, max_len: int) -> None:
    if prefix_len + 1 + max_len > gpt.cfg.context:
        raise ValueError(f"prefix ({prefix_len}) + begin token + max_len ({max_len}) exceed the language model's "
                         f"context {gpt.cfg.context}; lower max_len or raise model.context")


def real_token_mask(tokens: Tensor, eos_id: int) -> Tensor:
    """tokens [B, L] -> bool [B, L]: True up to and including each row's first end token."""
    is_eos = (tokens == eos_id).long()
    before = is_eos.cumsum(1) - is_eos  # end tokens strictly before this position
    return before == 0


@torch.no_grad()
def decode(gpt, prefix: Tensor | None, bos_id: int, eos_id: int, max_len: int, temperature: float = 0.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           batch_size: int | None = None, use_cache: bool = True, banned: tuple[int, ...] = (),
           attention: bool = False, bias: Tensor | None = None, no_repeat: int = 0) -> tuple[Tensor, ...]:
    """Greedy (temperature 0) or sampled decoding of B sequences after `prefix` [B, P, D] and a begin token.

    Returns tokens [B, L <= max_len] and their log-probabilities [B, L] under the sampling distribution
    (softmax of logits / temperature with the `banned` tokens removed, before top-k/top-p filtering;
    temperature 1 for greedy, with the `bias` and `no_repeat` applied). Rows stop at their end token; decoding
    stops when every row has.
    With `attention`, also each token's `PrefixAttention`, recorded in the same passes that chose the tokens.
    `bias` [B, V] (<= 0, e.g. a grounding prior) is added to every step's logits before the greedy choice
    (greedy only: sampled log-probabilities must stay those of the model, as `token_logprobs` computes them).
    `no_repeat` n > 0 (greedy only, likewise): no row repeats an n-gram of its own (`repeat_mask`).
    """
    if bias is not None and temperature > 0:
        raise ValueError("a decoding bias is for greedy decoding (temperature 0); sampling takes none")
    if no_repeat > 0 and temperature > 0:
        raise ValueError("no_repeat is for greedy decoding (temperature 0) and beam search; sampling takes none")
    b = prefix.shape[0] if prefix is not None else (batch_size or 1)
    device = next(gpt.parameters()).device
    check_room(gpt, 0 if prefix is None else prefix.shape[1], max_len)
    tokens = torch.full((b, 1), bos_id, dtype=torch.long, device=device)
    logprobs, done = [], torch.zeros(b, dtype=torch.bool, device=device)
    if attention and not use_cache:
        raise ValueError("attention maps are recorded through the key/value cache: use_cache must be True")
    cache = gpt.decoder.new_cache() if use_cache else None
    if attention:
        cache.record_attention()
    logits, _ = gpt(tokens, prefix=prefix, cache=cache, last_only=True)
    for _ in range(max_len):
        last = ban_tokens(logits[:, -1].float(), banned)
        if bias is not None:
            last = last + bias
        if no_repeat > 0:
            last = last.masked_fill(repeat_mask(tokens[:, 1:], no_repeat, last.shape[-1]), NEG_INF)
        nxt = sample(last, temperature, top_k, top_p, generator)
        nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)
        scaled = last / (temperature if temperature > 0 else 1.0)
        logprobs.append(scaled.log_softmax(-1).gather(1, nxt))
        tokens = torch.cat([tokens, nxt], dim=1)
        done |= nxt[:, 0] == eos_id
        if bool(done.all()):
            break
        if use_cache:
            logits, _ = gpt(nxt, cache=cache, last_only=True)
        else:
            logits, _ = gpt(tokens, prefix=prefix, last_only=True)
    out = tokens[:, 1:]
    logp = torch.cat(logprobs, dim=1).masked_fill(~real_token_mask(out, eos_id), 0.0)
    if attention:
        return out, logp, prefix_attention(cache, 0 if prefix is None else prefix.shape[1], out.shape[1])
    return out, logp


@torch.no_grad()
def extend(gpt, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, prefix: Tensor | None = None, use_cache: bool = True,
           generator: torch.Generator | None = None, stop_token: int | None = None) -> Tensor:
    """Extend a prompt idx [B, T] by up to max_new_tokens sampled tokens -> [B, T + new] (text generation).

    temperature 0 means greedy. With the cache each step feeds one token; past the context the window slides:
    the cache is rebuilt from the last half-context of tokens (a prefix must fit). `stop_token`: stop once every
    row has produced it (rows that have keep producing it).
    """
    context = gpt.cfg.context
    n_prefix = 0 if prefix is None else prefix.shape[1]
    if idx.shape[1] == 0 and prefix is None:
        raise ValueError("GPT.generate needs a prompt of at least one token or a prefix; got an empty prompt "
                         "(start from a newline or another token)")
    if n_prefix + idx.shape[1] > context and prefix is not None:
        raise ValueError(f"prefix ({n_prefix}) + prompt ({idx.shape[1]}) exceed the context {context}")
    cache = None
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if not use_cache:
            logits, _ = gpt(idx[:, -(context - n_prefix):], prefix=prefix, last_only=True)
        elif cache is None or len(cache) + 1 > context:  # (re)fill the cache
            if cache is not None and prefix is not None:
                raise ValueError(f"prefix + tokens exceed the context {context}; lower max_new_tokens")
            keep = context - n_prefix if cache is None else context // 2
            cache = gpt.decoder.new_cache()
            logits, _ = gpt(idx[:, -keep:], prefix=prefix, cache=cache, last_only=True)
        else:
            logits, _ = gpt(idx[:, -1:], cache=cache, last_only=True)
        nxt = sample(logits[:, -1], temperature, top_k, top_p, generator)
        if stop_token is not None:
            nxt = torch.where(done[:, None], torch.full_like(nxt, stop_token), nxt)
            done |= nxt[:, 0] == stop_token
        idx = torch.cat([idx, nxt], dim=1)
        if stop_token is not None and bool(done.all()):
            break
    return idx


def token_logprobs(gpt, prefix: Tensor | None, tokens: Tensor, bos_id: int, eos_id: int,
                   temperature: float = 1.0, banned: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """Teacher-forced log-probabilities of `tokens` [B, L] (as `decode` returns them), with gradients.

    Returns logp [B, L] (log softmax(logits / temperature) at each given token, 0 past a row's end) and
    the mask [B, L] of real tokens (up to and including the first end token).
    """
    logits, _ = gpt(teacher_inputs(tokens, bos_id), prefix=prefix)
    return logprobs_of(logits, tokens, eos_id, temperature, banned)[:2]


def teacher_inputs(tokens: Tensor, bos_id: int) -> Tensor:
    """Decoded tokens [B, L] -> the inputs [B, L] that predict them in one pass: BOS, tokens[:, :-1]."""
    return torch.cat([torch.full_like(tokens[:, :1], bos_id), tokens[:, :-1]], dim=1)


def logprobs_of(logits: Tensor, tokens: Tensor, eos_id: int, temperature: float = 1.0,
                banned: tuple[int, ...] = ()) -> tuple[Tensor, Tensor, Tensor]:
    """From teacher-forced logits [B, L, V] of `tokens` [B, L]: the tokens' log-probabilities [B, L] under the
    sampling distribution (0 past a row's end), the mask [B, L] of real tokens (up to and including the first
    end token) and that distribution's entropy [B, L] at each position (0 past the end)."""
    scaled = ban_tokens(logits.float(), banned) / (temperature if temperature > 0 else 1.0)
    logp_all = scaled.log_softmax(-1)
    logp = logp_all.gather(2, tokens[:, :, None])[:, :, 0]
    entropy = -(logp_all.exp() * logp_all.nan_to_num(neginf=0.0)).sum(-1)  # banned tokens: 0 * -inf -> 0
    mask = real_token_mask(tokens, eos_id)
    return logp.masked_fill(~mask, 0.0), mask, entropy.masked_fill(~mask, 0.0)
