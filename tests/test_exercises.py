"""The exercises (`python main.py exercise ...`): every stub, checked, fails with a plain message; with the
project's own code pasted in, every check passes. Also the few checks the exercises add to the real tests
(data-free CIDEr-D against pycocoevalcap, LayerNorm without bias, the greedy baseline and the SCST loss)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocoevalcap.cider.cider import Cider

from mllm.cli import main
from mllm.evaluation.cider import CiderD
from mllm.exercises import EXERCISES, check_many, paste_solution, start
from mllm.exercises.grade import check_jobs
from mllm.exercises.workspace import learner_file, next_hint, replace_definition
from mllm.rl.scst import baseline_rewards, scst_loss
from mllm.transformer import LayerNorm, ScaledDotProductAttention

# ---- checks the exercises run (against the project's code here, against the learner's under `check`) --------


def test_layernorm_without_bias():
    norm = LayerNorm(4, bias=False)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    expected = (x - 2.5) / torch.sqrt(torch.tensor(1.25 + 1e-5)) * norm.weight
    torch.testing.assert_close(norm(x), expected)


@pytest.mark.parametrize("masking", ["none", "padding", "causal", "padding+causal"])
def test_written_out_attention_equals_torchs_kernel(masking):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
    padding = (torch.arange(6)[None, :] < torch.tensor([6, 4])[:, None])[:, None, None, :]
    mask = padding if "padding" in masking else None
    causal = "causal" in masking
    out, _ = ScaledDotProductAttention()(q, k, v, mask=mask, is_causal=causal)
    full = mask if not causal else (torch.ones(6, 6, dtype=torch.bool).tril() if mask is None
                                    else mask & torch.ones(6, 6, dtype=torch.bool).tril())
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=full), atol=1e-5, rtol=1e-5)


SMALL = [["a dog runs on the grass".split(), "a brown dog is running".split(), "dog on grass".split()],
         ["two children play in the water".split(), "kids splash in a pool".split()],
         ["a man rides a bike".split(), "a cyclist on a road".split(), "a man on a bicycle".split()],
         ["a dog jumps over a log".split(), "the dog leaps".split()]]


def test_cider_d_equals_pycocoevalcap_on_small_corpora():
    candidates = ["a dog runs on grass".split(), "a man rides a bike".split(), [], "zzyzx dog".split()]
    refs = [SMALL[0], SMALL[2], SMALL[1], SMALL[3]]
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(c)] for i, c in enumerate(candidates)}
    expected_mean, expected = Cider().compute_score(gts, res)
    mean, scores = CiderD(refs).score(candidates, refs)
    assert abs(mean - expected_mean) < 1e-6 and np.abs(scores - np.asarray(expected)).max() < 1e-6
    # document frequencies from a larger corpus: pycocoevalcap over the same items plus more reference sets
    extra = [["a cat sleeps".split()], ["a red car".split(), "a car parked".split()]]
    _, expected = Cider().compute_score({**gts, 4: [" ".join(r) for r in extra[0]], 5: [" ".join(r) for r in extra[1]]},
                                        {**res, 4: [""], 5: [""]})
    _, scores = CiderD(refs + extra).score(candidates, refs)
    assert np.abs(scores - np.asarray(expected)[:4]).max() < 1e-6
    assert CiderD(refs).score([], []) == (0.0, pytest.approx(np.zeros(0)))


def test_scst_loss_and_the_greedy_baseline():
    rewards, greedy = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.4, 0.6]), torch.tensor([0.5, 0.3])
    assert baseline_rewards(rewards, greedy, 3, "greedy").tolist() == pytest.approx([0.5, 0.5, 0.5, 0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match="greedy, mean"):
        baseline_rewards(rewards, greedy, 3, "median")
    logp = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    advantage = torch.tensor([2.0, -1.0], requires_grad=True)
    entropy = torch.tensor([[1.0, 1.0, 5.0], [0.5, 0.5, 0.5]])
    total, count = scst_loss(logp, mask, advantage, entropy, entropy_bonus=0.1)
    assert count == 2
    assert total.item() == pytest.approx(-(2.0 * -3.0 + -1.0 * -1.5) - 0.1 * (2.0 + 1.5))
    total.backward()
    assert advantage.grad is None  # the reward is a constant: no gradient through it
    torch.testing.assert_close(logp.grad, -torch.tensor([[2.0, 2.0, 0.0], [-1.0, -1.0, -1.0]]))
    assert scst_loss(logp, mask, advantage)[0].item() == pytest.approx(4.5)


# ---- the exercises themselves ------------------------------------------------------------------------------


def test_every_stub_fails_in_plain_words_and_the_projects_code_passes(tmp_path):
    """start -> check: every check fails with 'not written yet'; the solution pasted in -> every check passes; a
    file that does not parse is named with its line. One process start for all of it (each check forked from it),
    to keep the suite fast."""
    for ex in EXERCISES:
        start(ex.name, tmp_path / "stubs")
        start(ex.name, tmp_path / "solved")
        paste_solution(ex.name, tmp_path / "solved")
    broken = start("sinusoidal", tmp_path / "broken")
    broken.write_text(broken.read_text() + "\nthis is not python\n")
    results = check_jobs([[(ex.name, learner_file(ex.name, tmp_path / "stubs"))] for ex in EXERCISES]
                         + [[(ex.name, learner_file(ex.name, tmp_path / "solved")) for ex in EXERCISES]]
                         + [[("sinusoidal", broken)]])
    stubs, solved, [unparsable] = [r[0] for r in results[:-2]], results[-2], results[-1]
    for result in stubs:
        text = result.text()
        assert not result.passed and result.checks, text
        assert all(not c.passed and c.problem.startswith("not written yet") for c in result.checks), text
        assert f"0 of {len(result.checks)} checks pass" in text and "Traceback" not in text
    for result in solved:
        assert result.passed, result.text()
        assert "Well done" in result.text()
    text = unparsable.text()
    assert unparsable.load_error and "could not be used" in text and "line" in text, text


def test_a_wrong_answer_is_named_by_the_check_command(tmp_path):
    """`exercise check` (its own pytest process): a LayerNorm with the unbiased std fails in plain words."""
    path = start("layernorm", tmp_path)
    path.write_text(path.read_text().replace(
        '        raise NotImplementedError("write LayerNorm.forward (exercise \'layernorm\')")',
        "        return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * self.weight + self.bias"))
    [wrong] = check_many([("layernorm", path)])
    assert not wrong.passed and "still wrong" in wrong.text() and "not close" in wrong.text(), wrong.text()


def test_the_command_line(tmp_path, capsys):
    root = str(tmp_path)
    assert main(["exercise", "list", "--dir", root]) == 0
    listing = capsys.readouterr().out
    assert all(ex.name in listing for ex in EXERCISES)
    assert main(["exercise", "start", "scst", "--dir", root]) == 0
    assert main(["exercise", "start", "scst", "--dir", root]) == 2
    assert "already exists" in capsys.readouterr().out
    assert main(["exercise", "hint", "scst", "--dir", root]) == 0
    assert main(["exercise", "hint", "scst", "--dir", root]) == 0
    out = capsys.readouterr().out
    assert "Hint 1 of 3" in out and "Hint 2 of 3" in out
    assert main(["exercise", "solution", "scst", "--dir", root]) == 0
    assert "def scst_loss" in capsys.readouterr().out
    assert main(["exercise", "check", "nope", "--dir", root]) == 2
    assert "no exercise 'nope'" in capsys.readouterr().out
    assert next_hint("cider", tmp_path)[0] == 1  # no workspace: the first hint, nothing written


def test_replace_definition_keeps_the_rest_of_the_file():
    source = "import x\n\n\nclass A:\n    def f(self):\n        raise NotImplementedError\n\n    def g(self):\n" \
             "        return 2\n"
    out = replace_definition(source, "A.f", "def f(self):\n    return 1\n")
    assert out == "import x\n\n\nclass A:\n    def f(self):\n        return 1\n\n    def g(self):\n" \
                  "        return 2\n"
