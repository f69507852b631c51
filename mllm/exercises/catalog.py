"""The exercises: which piece of the project each one asks for, the real tests that grade it, in plain words
what each test checks, the hints in order and what the learner should see when it passes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    module: str  # the module whose code the learner's replaces
    targets: tuple[str, ...]  # "function" or "Class.method" in `module`
    tests: tuple[str, ...]  # pytest node ids (files under tests/, test functions)
    checks: dict[str, str]  # test function name -> the behaviour it checks, in plain words
    hints: tuple[str, ...]
    expect: str  # what the learner sees when it passes
    page: str  # the tutorial page that explains it


T = "tests/test_attention.py::"
B = "tests/test_blocks.py::"
X = "tests/test_exercises.py::"

EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "attention", "Scaled dot-product attention with masks", "mllm.transformer.attention",
        ("ScaledDotProductAttention.forward",),
        (T + "test_sdpa_matches_the_formula", T + "test_padded_keys_get_zero_weight_and_do_not_change_outputs",
         T + "test_causality", X + "test_written_out_attention_equals_torchs_kernel",
         T + "test_fused_equals_hand_written",
         T + "test_a_query_with_no_allowed_key_gets_zeros_not_nan"),
        {"test_sdpa_matches_the_formula": "the weights are softmax(q k^T / sqrt(d)), each row sums to 1, and the "
                                          "output is weights @ v",
         "test_padded_keys_get_zero_weight_and_do_not_change_outputs": "a padded key (mask False) gets weight 0 "
                                                                       "and changing it changes nothing",
         "test_causality": "with is_causal=True no query sees a later key",
         "test_written_out_attention_equals_torchs_kernel": "your written-out path (fused=False) equals "
                                                            "torch's F.scaled_dot_product_attention with no mask, "
                                                            "padding, causal and both",
         "test_fused_equals_hand_written": "fused=True (self._fused, torch's kernel) gives what fused=False gives, "
                                           "with every kind of mask, in eval and in train mode",
         "test_a_query_with_no_allowed_key_gets_zeros_not_nan": "a query that may attend to no key gets zero "
                                                                "weights and output, and no NaN in the gradients"},
        ("Start from the formula: scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]); "
         "weights = scores.softmax(-1); out = weights @ v. That alone passes the first check.",
         "Masks are True where a query may attend: scores.masked_fill(~mask, float('-inf')) before the softmax. "
         "For is_causal, build causal_mask(t_q, t_k, q.device) and combine with `mask & causal`.",
         "A row whose mask is all False becomes softmax of all -inf = NaN. Find such rows with "
         "empty = ~mask.any(-1, keepdim=True), put 0 in their scores before the softmax and zero their weights "
         "after it (masked_fill with `empty`).",
         "The fused check compares your hand-written path (fused=False) with torch's kernel (fused=True): when "
         "self.fused and not return_weights, return self._fused(q, k, v, mask, is_causal=False), None after "
         "building the combined mask. Apply dropout with F.dropout(weights, self.dropout, self.training)."),
        "check prints 6 of 6 checks pass. Page 1's first example then prints attention weights whose rows sum "
        "to 1; with a causal mask the first query's weights are [1, 0, 0, ...].",
        "docs/tutorial/01-transformer.md"),
    Exercise(
        "multihead", "Multi-head attention with a key/value cache", "mllm.transformer.attention",
        ("MultiHeadAttention.split_heads", "MultiHeadAttention.merge_heads", "MultiHeadAttention.forward"),
        (T + "test_mha_matches_torch_outputs_and_gradients", T + "test_cache_step_by_step_equals_full_pass"),
        {"test_mha_matches_torch_outputs_and_gradients": "with torch.nn.MultiheadAttention's weights copied in, "
                                                         "self- and cross-attention give torch's outputs, "
                                                         "per-head weights and gradients",
         "test_cache_step_by_step_equals_full_pass": "feeding a prompt and then one token at a time through a "
                                                     "KVCache gives the same outputs as one full causal pass"},
        ("split_heads: x.view(B, T, H, D // H).transpose(1, 2). merge_heads: x.transpose(1, 2).reshape(B, T, D) "
         "(reshape, not view: the transpose made it non-contiguous).",
         "Keys and values come from `source = query if key_value is None else key_value`; the queries always "
         "from `query`. Project each with its own Linear before splitting the heads.",
         "The cache: `k, v = cache.extend(k, v)` appends the new keys/values and returns all of them, so the new "
         "queries attend to every earlier position. The causal mask aligns queries to the end of the keys."),
        "check prints 2 of 2 checks pass: your layer equals torch's to 1e-5, outputs and gradients.",
        "docs/tutorial/01-transformer.md"),
    Exercise(
        "layernorm", "Layer normalisation", "mllm.transformer.layers", ("LayerNorm.forward",),
        (B + "test_layernorm_matches_torch_outputs_and_gradients", B + "test_fused_layernorm_equals_hand_written",
         X + "test_layernorm_without_bias"),
        {"test_layernorm_matches_torch_outputs_and_gradients": "with the same weights, outputs and gradients "
                                                               "equal torch.nn.LayerNorm's",
         "test_fused_layernorm_equals_hand_written": "the written-out path equals F.layer_norm (fused=True)",
         "test_layernorm_without_bias": "LayerNorm(D, bias=False) normalises and scales without adding a bias"},
        ("mean = x.mean(-1, keepdim=True); var = (x - mean).pow(2).mean(-1, keepdim=True): the biased variance "
         "(x.var(-1) divides by D - 1 and fails the check by a few per cent).",
         "y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight, then + self.bias unless it is None."),
        "check prints 3 of 3 checks pass; LayerNorm(4)(torch.tensor([[1., 2., 3., 4.]])) gives about "
        "[-1.342, -0.447, 0.447, 1.342].",
        "docs/tutorial/01-transformer.md"),
    Exercise(
        "sinusoidal", "Sinusoidal positional encoding", "mllm.transformer.layers",
        ("SinusoidalPositionalEncoding.__init__",),
        (B + "test_sinusoidal_encoding_values", B + "test_positional_encodings_reject_overlong_sequences"),
        {"test_sinusoidal_encoding_values": "pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos, 2i+1] = cos(...), "
                                            "and an offset shifts the positions",
         "test_positional_encodings_reject_overlong_sequences": "self.max_len and self.d_model are kept, so "
                                                                "forward refuses a sequence past max_len"},
        ("The angle of position pos in pair i is pos * 10000^(-2i/d); compute inv_freq once for all i as "
         "torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d)) and broadcast pos [L, 1] * inv_freq [d/2].",
         "pe[:, 0::2] = sin(angles), pe[:, 1::2] = cos(angles). Then register_buffer('pe', pe, persistent=False) "
         "and keep self.d_model, self.max_len, self.dropout: forward reads them."),
        "check prints 2 of 2 checks pass; pe[1, 0] = sin(1) = 0.8415 and pe[1, 1] = cos(1) = 0.5403.",
        "docs/tutorial/01-transformer.md"),
    Exercise(
        "patches", "The ViT's patch embedding", "mllm.vision.vit", ("PatchEmbedding.forward",),
        ("tests/test_vit.py::test_patch_embedding_equals_strided_conv",
         "tests/test_vit.py::test_shapes_at_several_image_sizes"),
        {"test_patch_embedding_equals_strided_conv": "your patches equal a stride-p Conv2d with the same weights, "
                                                     "in row-major order, and a bad size is refused by name",
         "test_shapes_at_several_image_sizes": "a whole ViT built on your patches gives [B, 10] logits and "
                                               "[B, 1 + N, D] tokens at 32, 64 and 96 pixels"},
        ("A 32x32 image with p = 4 gives an 8x8 grid: N = 64 patches of C*p*p = 48 numbers each.",
         "x.reshape(B, C, H//p, p, W//p, p).permute(0, 2, 4, 1, 3, 5) puts each patch's (C, p, p) pixels last, "
         "grid rows before grid columns; then reshape(B, N, C*p*p) and self.proj."),
        "check prints 2 of 2 checks pass; a [2, 3, 32, 32] batch gives [2, 64, D] patch tokens.",
        "docs/tutorial/02-vit.md"),
    Exercise(
        "gpt_forward", "The causal GPT forward pass with an image prefix", "mllm.language.gpt", ("GPT.forward",),
        ("tests/test_gpt.py::test_forward_with_prefix_aligns_tokens_after_the_prefix",
         "tests/test_gpt.py::test_full_model_is_causal", "tests/test_gpt.py::test_cached_greedy_generation_equals_"
         "recomputing", "tests/test_gpt.py::test_prefix_generation_cached_equals_recomputing"),
        {"test_forward_with_prefix_aligns_tokens_after_the_prefix": "logits at token t come from position P + t, "
                                                                    "see the prefix and tokens <= t only, and the "
                                                                    "loss ignores targets of -100",
         "test_full_model_is_causal": "changing later tokens never changes earlier logits",
         "test_cached_greedy_generation_equals_recomputing": "generation with the KV cache (positions offset by "
                                                             "len(cache)) equals recomputing every step",
         "test_prefix_generation_cached_equals_recomputing": "the same with an image prefix"},
        ("Embeddings first: parts = [prefix] (if any) + [self.tok_embed(idx)] (if any); torch.cat(parts, dim=1).",
         "Positions continue after the cache: self.pos(x, 0 if cache is None else len(cache)); then "
         "self.decoder(..., is_causal=True, cache=cache).",
         "Drop the prefix's P positions before the head: logits = self.head(h[:, P:]). The loss is "
         "F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100). With last_only, return "
         "self.head(h[:, -1:]), None."),
        "check prints 4 of 4 checks pass; page 3's example then prints logits of shape [B, T, V].",
        "docs/tutorial/03-gpt.md"),
    Exercise(
        "connector", "The connector: pixel-unshuffle and the MLP", "mllm.multimodal.connector",
        ("pixel_shuffle", "Connector.forward"),
        ("tests/test_mllm.py::test_pixel_shuffle_and_avgpool_take_2x2_neighbourhoods",
         "tests/test_mllm.py::test_loss_is_on_caption_tokens_only"),
        {"test_pixel_shuffle_and_avgpool_take_2x2_neighbourhoods": "each output token concatenates a 2x2 block "
                                                                   "of neighbours in row-major order, and the "
                                                                   "connector maps them to the GPT's width",
         "test_loss_is_on_caption_tokens_only": "a whole captioner built on your connector trains on the caption "
                                                "tokens only"},
        ("A 4x4 grid becomes a 2x2 grid; output token 1 is the block at rows 0-1, columns 2-3.",
         "tokens.reshape(B, g//f, f, g//f, f, D).permute(0, 1, 3, 2, 4, 5).reshape(B, (g//f)**2, f*f*D).",
         "Connector.forward: if self.reduce == 'pixel_shuffle' use pixel_shuffle(patches, self.factor); "
         "'avgpool' uses avg_pool; then return self.proj(patches)."),
        "check prints 2 of 2 checks pass; the cpu captioner's 64 patch tokens [B, 64, 128] become 16 image tokens "
        "[B, 16, 512] before the MLP.",
        "docs/tutorial/04-captioner.md"),
    Exercise(
        "cider", "CIDEr-D", "mllm.evaluation.cider", ("CiderD.score",),
        (X + "test_cider_d_equals_pycocoevalcap_on_small_corpora", "tests/test_metrics.py::test_cider_d_rejects_"
         "bad_input"),
        {"test_cider_d_equals_pycocoevalcap_on_small_corpora": "your scores equal pycocoevalcap's Cider to 1e-6 "
                                                               "(own caption, another's, empty, unseen words, "
                                                               "df from another corpus)",
         "test_cider_d_rejects_bad_input": "strings instead of token lists, empty reference sets and mismatched "
                                           "lengths are ValueErrors naming the problem"},
        ("Per order n, the vector of a caption is {gram: count * idf(gram)} with idf(gram) = "
         "self.idf[self.ids[gram]] for a corpus n-gram and self.log_n_docs otherwise.",
         "The similarity clips the candidate's weight: sum over shared grams of min(g_c, g_r) * g_r, divided by "
         "both norms (0 if either is 0), times exp(-(l_c - l_r)**2 / (2 * self.sigma**2)).",
         "Average sim over the 4 orders, sum over references, times 10 / m. The length l is max(len - 1, 0)."),
        "check prints 2 of 2 checks pass; a candidate equal to a reference that is unique in the corpus scores "
        "well above 1 (CIDEr-D is on a 0-10 scale; the cpu captioner averages 0.284 on test).",
        "docs/tutorial/04-captioner.md"),
    Exercise(
        "scst", "The SCST loss with both baselines", "mllm.rl.scst", ("baseline_rewards", "scst_loss"),
        ("tests/test_rl.py::test_mean_baseline_is_the_mean_of_the_other_samples",
         "tests/test_rl.py::test_one_step_makes_a_sample_above_the_baseline_likelier_and_one_below_less_likely",
         X + "test_scst_loss_and_the_greedy_baseline"),
        {"test_mean_baseline_is_the_mean_of_the_other_samples": "the mean baseline is the mean reward of the "
                                                                "image's other samples; n < 2 is refused",
         "test_one_step_makes_a_sample_above_the_baseline_likelier_and_one_below_less_likely": "one gradient "
             "step makes a sample that beat its baseline likelier and one below it less likely",
         "test_scst_loss_and_the_greedy_baseline": "the greedy baseline repeats each image's greedy reward n "
                                                   "times, the loss is -(advantage * masked log-prob sum) minus "
                                                   "the entropy bonus, and no gradient reaches the advantage"},
        ("greedy: greedy_rewards.repeat_interleave(n). mean: r = sample_rewards.view(-1, n); "
         "((r.sum(1, keepdim=True) - r) / (n - 1)).flatten().",
         "loss = -(advantage.detach() * (logp * mask).sum(1)).sum(); return it with logp.shape[0].",
         "The entropy bonus lowers the loss where the sampling distribution is spread: "
         "total - entropy_bonus * (entropy * mask).sum()."),
        "check prints 3 of 3 checks pass; with rewards [0.9, 0.1, 0.5, 0.5] and greedy reward 0.5 the advantages "
        "are [0.4, -0.4, 0, 0].",
        "docs/tutorial/05-scst.md"),
)

BY_NAME = {e.name: e for e in EXERCISES}


def exercise(name: str) -> Exercise:
    """The exercise called `name`, or a ValueError listing the names."""
    if name not in BY_NAME:
        raise ValueError(f"no exercise {name!r}; choose one of: {', '.join(BY_NAME)} "
                         f"(python main.py exercise list)")
    return BY_NAME[name]
