"""Beam search over a GPT after a prefix (`decoding.py` has the rest of decoding): `beam_search`, each image's best
caption, as dev and test decode with beam search; `beam_nbest`, each image's n best captions (SCST's
`rl.sampler=beam` trains on them). Both run all B * K beams as one batch through the key/value cache.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .decoding import NEG_INF, ban_tokens, check_room, real_token_mask, repeat_mask


@torch.no_grad()
def beam_search(gpt, prefix: Tensor, bos_id: int, eos_id: int, max_len: int, beam_size: int = 3,
                length_penalty: float = 0.0, banned: tuple[int, ...] = (), bias: Tensor | None = None,
                no_repeat: int = 0) -> Tensor:
    """Beam search after `prefix` [B, P, D]: tokens [B, L] of each row's best caption.

    Each step the K live beams of a row propose their 2K best continuations. A continuation that ends
    with the end token and ranks among the first K becomes a finished caption, scored by its summed
    log-probability / length ** `length_penalty` (length counts the end token; 0: the plain sum, 1: the
    mean per token); the best K others stay live. A row stops when its best finished caption beats what
    its best live beam scores now (exact for length_penalty 0, where a live beam's score only falls; a
    heuristic above 0, where a longer length can still raise it); at max_len the live beams compete too.
    Beam size 1 is greedy. All B * K beams run as one batch through the key/value cache, reordered as
    beams are chosen. `bias` [B, V] (<= 0, e.g. a grounding prior) is added to every step's log-probabilities.
    `no_repeat` n > 0: no beam continues with a token that repeats one of its own n-grams (`repeat_mask`).
    """
    b, k = prefix.shape[0], beam_size
    device = prefix.device
    check_room(gpt, prefix.shape[1], max_len)
    cache = gpt.decoder.new_cache()
    start = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)
    logits, _ = gpt(start, prefix=prefix.repeat_interleave(k, dim=0), cache=cache, last_only=True)
    scores = torch.full((b, k), NEG_INF, device=device)
    scores[:, 0] = 0.0  # all beams start equal: let only the first one expand at step 1
    tokens = torch.empty(b, k, 0, dtype=torch.long, device=device)
    best = torch.full((b,), NEG_INF, device=device)  # best finished caption's score per row
    best_tokens = torch.full((b, max_len), eos_id, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    rows = torch.arange(b, device=device)
    beam_bias = None if bias is None else bias.float().repeat_interleave(k, dim=0)  # [B * K, V]
    for t in range(max_len):
        logp = ban_tokens(logits[:, -1].float(), banned).log_softmax(-1)
        if beam_bias is not None:
            logp = logp + beam_bias
        vocab = logp.shape[-1]
        if no_repeat > 0:
            logp = logp.masked_fill(repeat_mask(tokens.view(b * k, t), no_repeat, vocab), NEG_INF)
        top, flat = (scores[..., None] + logp.view(b, k, vocab)).view(b, -1).topk(2 * k, dim=-1)
        parent, token = flat // vocab, flat % vocab
        history = tokens.gather(1, parent[..., None].expand(b, 2 * k, t))  # [B, 2K, t]
        ends = (token == eos_id) & (torch.arange(2 * k, device=device) < k) & torch.isfinite(top)
        finished = torch.where(ends, top / (t + 1) ** length_penalty, NEG_INF)
        score, pick = finished.max(dim=1)
        better = (score > best) & ~done
        if bool(better.any()):
            best = torch.where(better, score, best)
            chosen = torch.cat([history[rows, pick], token[rows, pick][:, None]], dim=1)
            best_tokens[better, : t + 1] = chosen[better]
        live_scores, order = torch.where(token == eos_id, NEG_INF, top).topk(k, dim=-1)
        parent, token = parent.gather(1, order), token.gather(1, order)
        scores = live_scores
        tokens = torch.cat([history.gather(1, order[..., None].expand(b, k, t)), token[..., None]], dim=2)
        done |= best >= scores[:, 0] / (t + 1) ** length_penalty
        if bool(done.all()):
            break
        cache.reorder((rows[:, None] * k + parent).view(-1))
        logits, _ = gpt(token.view(-1, 1), cache=cache, last_only=True)
    live = scores[:, 0] / tokens.shape[2] ** length_penalty  # rows still going at max_len
    use_live = ~done & (live > best)
    best_tokens[use_live, : tokens.shape[2]] = tokens[use_live, 0]
    return best_tokens[:, : max(1, int((best_tokens != eos_id).sum(1).max()) + 1)]


@torch.no_grad()
def beam_nbest(gpt, prefix: Tensor, bos_id: int, eos_id: int, max_len: int, beam_size: int,
               banned: tuple[int, ...] = (), bias: Tensor | None = None, no_repeat: int = 0
               ) -> tuple[Tensor, Tensor]:
    """The `beam_size` best captions of each of B images found by one beam search after `prefix` [B, P, D]:
    tokens [B*K, L <= max_len] (image-major, each row up to its end token and end tokens after it) and their
    summed log-probabilities [B, K], best first (plus `bias` [B, V] at every token, as `beam_search` adds it).

    Unlike `beam_search`, which keeps the single best finished caption apart from K live beams, a finished
    caption here keeps its place among the K: its one continuation is the end token at log-probability 0, so
    its score stays fixed, and the search stops when all K have finished (or at max_len, the unfinished ones cut
    there). The K rows are distinct captions. The image positions run once per image (`GPT.shared_prefix`).
    `no_repeat` n > 0: no beam repeats one of its own n-grams, as in `beam_search`.
    """
    b, k = prefix.shape[0], beam_size
    device = prefix.device
    check_room(gpt, prefix.shape[1], max_len)
    rows = torch.arange(b, device=device)
    cache, logits = gpt.shared_prefix(prefix, rows.repeat_interleave(k),
                                      torch.full((b, 1), bos_id, dtype=torch.long, device=device))
    scores = torch.full((b, k), NEG_INF, device=device)
    scores[:, 0] = 0.0  # all beams start equal: only the first one expands at step 1
    tokens = torch.empty(b, k, 0, dtype=torch.long, device=device)
    finished = torch.zeros(b, k, dtype=torch.bool, device=device)
    beam_bias = 0.0 if bias is None else bias.float().repeat_interleave(k, dim=0)
    only_end = None
    for t in range(max_len):
        logp = ban_tokens(logits[:, -1].float(), banned).log_softmax(-1) + beam_bias  # [B*K, V]
        if no_repeat > 0:  # (finished beams' rows are replaced just below)
            logp = logp.masked_fill(repeat_mask(tokens.reshape(b * k, t), no_repeat, logp.shape[-1]), NEG_INF)
        if only_end is None:
            only_end = torch.full_like(logp[0], NEG_INF).index_fill(0, torch.tensor([eos_id], device=device), 0.0)
        logp = torch.where(finished.view(-1, 1), only_end, logp)
        vocab = logp.shape[-1]
        scores, flat = (scores[..., None] + logp.view(b, k, vocab)).view(b, -1).topk(k, dim=-1)
        parent, token = flat // vocab, flat % vocab
        tokens = torch.cat([tokens.gather(1, parent[..., None].expand(b, k, t)), token[..., None]], dim=2)
        finished = finished.gather(1, parent) | (token == eos_id)
        if bool(finished.all()):
            break
        cache.reorder((rows[:, None] * k + parent).view(-1))
        logits, _ = gpt(token.view(-1, 1), cache=cache, last_only=True)
    out = tokens.reshape(b * k, -1)
    return out.masked_fill(~real_token_mask(out, eos_id), eos_id), scores
