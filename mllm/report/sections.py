"""One function per report section: each reads its stage's run folder and returns markdown (figures copied)."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm.multimodal.report import diagnostics_table, markdown_table
from mllm.training.lineage import file_sha256

from . import testrun
from .tables import ablation_table, analysis_captioner, analysis_scst, differences, fmt, minutes, seed_table_lines

STAGE_FOLDERS = {"reverse": "reverse-{preset}", "vit": "vit-{preset}", "align": "align-{preset}", "gpt": "gpt-{preset}",
                 "captioner": "mllm-{preset}", "blind": "mllm-{preset}-blind", "scst": "rl-{preset}"}


@dataclass
class Context:
    """Where the runs are (runs/<stage>-<preset>), where the report goes and where its figures are copied."""

    runs: Path
    preset: str
    out_dir: Path
    fig_dir: Path
    tests_ran: bool | None = None  # the test stage ran for this report (True), was left out of a demo (False)

    def folder(self, stage: str) -> Path:
        return self.runs / STAGE_FOLDERS[stage].format(preset=self.preset)

    def summary(self, stage: str) -> dict[str, Any] | None:
        path = self.folder(stage) / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def figure(self, stage: str, file: str, alt: str) -> str:
        """Copy runs/<stage run>/<file> next to the report; the markdown image line (or a note if missing)."""
        src = self.folder(stage) / file
        if not src.is_file():
            return f"*(figure {file} missing from {self.folder(stage)})*"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        dst = self.fig_dir / f"{stage}-{file}"
        shutil.copyfile(src, dst)
        return f"![{alt}]({dst.relative_to(self.out_dir).as_posix()})"

    def missing(self, stage: str, command: str) -> str:
        return (f"*Not run yet: `{command} --run-dir {self.folder(stage)}` (or `python main.py demo --preset "
                f"{self.preset} --runs {self.runs}`) writes it.*\n")


def section(stage: str, heading: str, command: str) -> Callable[[Callable[..., str]], Callable[[Context], str]]:
    """A stage's report section: its heading, then `body(ctx, summary)`; or, where the stage's run is missing,
    the command that makes it (`{preset}` filled in)."""
    def wrap(body: Callable[[Context, dict[str, Any]], str]) -> Callable[[Context], str]:
        def write(ctx: Context) -> str:
            s = ctx.summary(stage)
            if s is None:
                return heading + ctx.missing(stage, command.format(preset=ctx.preset))
            return heading + "\n" + body(ctx, s)
        return write
    return wrap


def summary_section(ctx: Context) -> str:
    rows = ["## Results at a glance\n", "| stage | result | steps | wall time |", "|---|---|---|---|"]
    for stage, label, result in [
        ("reverse", "Transformer core, digit reversal", lambda s: f"held-out token accuracy {fmt(s['accuracy'])}"),
        ("vit", "ViT, CIFAR-10", lambda s: f"test accuracy {fmt(s['test_accuracy'])}"),
        ("align", "ViT aligned with Flickr8k captions", lambda s: f"dev photo -> caption R@5 "
                                                                  f"{fmt(s['dev_retrieval']['i2t_r5'])}"),
        ("gpt", "char GPT, Tiny Shakespeare", lambda s: f"validation loss {fmt(s['val_loss'], 4)} nats/char"),
        ("captioner", "captioner, Flickr8k", lambda s: _cider_line(s, "captioner")),
        ("blind", "blind captioner (baseline)", lambda s: _cider_line(s, "blind captioner")),
        ("scst", "SCST fine-tune, Flickr8k", lambda s: _cider_line(s, "SCST")),
    ]:
        s = ctx.summary(stage)
        rows.append(f"| {label} | {result(s)} | {s['steps']:,} | {minutes(s['wall_time_s'])} |" if s
                    else f"| {label} | not run | - | - |")
    return "\n".join(rows) + "\n"


def _cider_line(s: dict, label: str) -> str:
    beam = next(v for k, v in s["test"].items() if k.startswith(f"{label}, beam"))
    greedy = s["test"][f"{label}, greedy"]
    return (f"test CIDEr-D {fmt(beam['CIDEr-D'])} beam, {fmt(greedy['CIDEr-D'])} greedy; BLEU-4 {fmt(beam['BLEU-4'])} "
            f"beam")


def tests_section(ctx: Context) -> str:
    """The test suite's result per file and its screenshot (`testrun.tests_section`)."""
    return testrun.tests_section(ctx.runs, ctx.out_dir, ctx.fig_dir, ctx.tests_ran)


@section("reverse", "## 1. The Transformer core: reversing digit strings\n", "python main.py reverse")
def reverse_section(ctx: Context, s: dict[str, Any]) -> str:
    ok = "reached" if s["accuracy"] >= s["target"] else "did NOT reach"
    lines = [f"The hand-written encoder-decoder Transformer {ok} the target: held-out token accuracy "
             f"{fmt(s['accuracy'])} (target {fmt(s['target'], 2)}) after {s['steps']} steps in "
             f"{s['wall_time_s']:.1f} s. Greedy decodes of three new strings:\n",
             "| input | output | correct |", "|---|---|---|"]
    lines += [f"| `{e['input']}` | `{e['output']}` | {'yes' if e['correct'] else 'no'} |" for e in s["examples"]]
    return "\n".join(lines) + "\n"


@section("vit", "## 2. Vision Transformer on CIFAR-10\n", "python main.py train-vit --preset {preset}")
def vit_section(ctx: Context, s: dict[str, Any]) -> str:
    classes = s["per_class_accuracy"]
    best, worst = max(classes, key=classes.get), min(classes, key=classes.get)
    if "val_accuracy" in s:
        chosen = (f"with the weights chosen on {s['val_images']:,} held-out training images (validation accuracy "
                  f"{fmt(s['val_accuracy'])}; {s['train_images']:,} training images)")
        gap = s["val_accuracy"] - s["test_accuracy"]
        held_out = (f"validation is {gap * 100:.1f} points above test: part of the validation score is selection"
                    if gap > 0.01 else f"validation and test agree within {abs(gap) * 100:.2f} points, so choosing "
                                       f"the checkpoint on the validation split did not flatter it")
    else:
        chosen, held_out = "with the weights chosen on the test set (this run predates the held-out protocol)", ""
    lines = [f"CIFAR-10 test accuracy **{fmt(s['test_accuracy'])}** (chance 0.100), {chosen}. "
             f"{s['steps']:,} steps, {minutes(s['wall_time_s'])}.\n",
             f"Analysis: {fmt(s['test_accuracy'] / 0.1, 1)}x chance. The best class is {best} "
             f"({fmt(classes[best])}), the worst {worst} ({fmt(classes[worst])})" + (f"; {held_out}.\n" if held_out
                                                                                  else ".\n"),
             "| class | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes),
             "| test accuracy | " + " | ".join(fmt(v) for v in classes.values()) + " |\n"]
    for file, alt in [("curves.png", "ViT training curves"), ("confusion.png", "confusion matrix"),
                      ("attention.png", "attention maps"), ("predictions.png", "test predictions")]:
        lines += [ctx.figure("vit", file, alt), ""]
    return "\n".join(lines) + "\n"


@section("gpt", "## 3. Character-level GPT on Tiny Shakespeare\n", "python main.py train-llm --preset {preset}")
def gpt_section(ctx: Context, s: dict[str, Any]) -> str:
    gen, src = s["style"]["generated"], s["style"]["source"]
    lines = [f"Validation loss **{fmt(s['val_loss'], 4)} nats per character** (per-character perplexity "
             f"{math.exp(s['val_loss']):.2f}), {s['steps']:,} steps, {minutes(s['wall_time_s'])}.\n",
             f"Style of the generated text against held-out source text: known-word share "
             f"{fmt(gen['known_word_share'])} vs {fmt(src['known_word_share'])}, mean line length "
             f"{gen['mean_line_length']:.1f} vs {src['mean_line_length']:.1f} characters, speaker-line share "
             f"{fmt(gen['speaker_line_share'])} vs {fmt(src['speaker_line_share'])}.\n",
             "| statistic | generated | source |", "|---|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {gen[k]:.3g} | {src[k]:.3g} |" for k in gen]
    lines += ["", ctx.figure("gpt", "curves.png", "GPT training curves"), "", *_samples(ctx.folder("gpt"))]
    return "\n".join(lines) + "\n"


def _samples(run_dir: Path, count: int = 2) -> list[str]:
    """The first `count` samples of samples.md, each beside its source excerpt."""
    path = run_dir / "samples.md"
    if not path.is_file():
        return ["*(samples.md missing)*"]
    blocks = re.findall(r"## Sample (\d+).*?```\n(.*?)```.*?```\n(.*?)```", path.read_text(), re.S)
    out = []
    for number, generated, source in blocks[:count]:
        out += [f"Sample {number} (generated, left) beside a source excerpt (right):\n",
                "<table><tr><th>generated</th><th>Tiny Shakespeare</th></tr><tr>",
                f"<td><pre>{_html(generated)}</pre></td><td><pre>{_html(source)}</pre></td></tr></table>\n"]
    return out


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@section("captioner", "## 4. The captioner on Flickr8k\n", "python main.py train-mllm --preset {preset}")
def captioner_section(ctx: Context, s: dict[str, Any]) -> str:
    blind = ctx.summary("blind")
    rows = dict(s["test"])
    if blind:
        rows.update({k: v for k, v in blind["test"].items() if k.startswith("blind captioner")})
    cfg = s.get("config", {})
    text = cfg.get("init", {}).get("text")
    first = next(iter(rows.values()))
    lines = [f"ViT (from {cfg.get('init', {}).get('vision') or 'random weights'}) + connector + "
             f"{cfg.get('model', {}).get('tokenizer', 'word')}-level GPT (from {text or 'random weights'}), "
             f"{s['steps']:,} steps in {minutes(s['wall_time_s'])}; weights chosen on dev CIDEr-D "
             f"({fmt(s['best_val_cider'])}); scored on {first['candidates']:,} test images against their "
             f"references; {first.get('note', '')}.{_decoding(cfg)}\n", *_alignment(ctx, s),
             markdown_table(rows), analysis_captioner(rows),
             ablation_table(ctx.runs, "mllm-abl-*", ctx.folder("captioner"), differences, ctx.preset),
             ctx.figure("captioner", "curves.png", "captioner curves"), "", *_grounding(ctx, s, rows),
             _gallery_note(s), ctx.figure("captioner", "gallery.png", "test photos with their captions")]
    return "\n".join(lines) + "\n"


def _alignment(ctx: Context, s: dict[str, Any]) -> list[str]:
    """Where the captioner's ViT started from the alignment run's best.pt (by its sha256): that run's retrieval."""
    a, best = ctx.summary("align"), ctx.folder("align") / "best.pt"
    start = (s.get("inits") or {}).get("init.vision") or {}
    if a is None or not best.is_file() or start.get("sha256") != file_sha256(best):
        return []
    r = a["dev_retrieval"]
    return [f"Its ViT was first aligned with the training captions (`train-align`: CLIP's contrastive loss, "
            f"{a['steps']:,} steps in {minutes(a['wall_time_s'])}). Among the dev photos and their five captions "
            f"each, a photo finds one of its own captions in its 5 nearest {fmt(r['i2t_r5'])} of the time (nearest: "
            f"{fmt(r['i2t_r1'])}), a caption its photo {fmt(r['t2i_r5'])} (nearest: {fmt(r['t2i_r1'])}); dev photos "
            f"spread evenly over the split, each with its three nearest dev captions (+: its own):\n",
            ctx.figure("align", "retrieval.png", "dev photos and their nearest captions"), ""]


def _decoding(cfg: dict[str, Any]) -> str:
    """How the run's test captions were decoded beyond greedy and beam size: grounding and the n-gram ban."""
    ev = cfg.get("eval", {})
    parts = ([f"grounded decoding at strength {ev['grounding']:g}"] if ev.get("grounding") else []) + \
        ([f"no caption repeats one of its own {ev['no_repeat']}-grams"] if ev.get("no_repeat") else [])
    return f" Decoding: {' and '.join(parts)}." if parts else ""


def _note(s: dict[str, Any]) -> str:
    """How the test captions were tokenised (and whether METEOR ran): the metrics' own note."""
    return next(iter(s["test"].values())).get("note", "")


def _gallery_note(s: dict[str, Any]) -> str:
    if "attention_figures" in s:  # the gallery of a run with the grounding diagnostics
        return ("Test photos spread evenly over the split (not chosen), the model's input inset: its greedy and beam "
                "captions and one reference.\n")
    return "Test images spread evenly over the split, as the model sees them, with the beam caption and a reference.\n"


def _grounding(ctx: Context, s: dict[str, Any], rows: dict[str, Any]) -> list[str]:
    """Object hallucination and variety of every row, with people's own rate; the per-word attention maps."""
    if not any("hallucination_per_caption" in r for r in rows.values()):
        return []  # a run from before these diagnostics
    human = s.get("human_hallucination") or {}
    out = ["### Grounding and variety\n",
           "An object word is hallucinated when none of the image's references names that object (synonym groups, "
           "plurals, every person one object); per caption: the share of captions with at least one.\n",
           diagnostics_table({k: v for k, v in rows.items() if "hallucination_per_caption" in v})]
    if human:
        out.append(f"People, each reference judged against the image's other four: {fmt(human['per_caption'])} "
                   f"per caption, {fmt(human['per_mention'])} per mention.\n")
    figures = s.get("attention_figures") or []
    if figures:
        out.append("### Where each word looked\n\nFor each word of a greedy caption, the attention of the position "
                   "that chose it to the image tokens, averaged over heads and renormalised over the image tokens; "
                   "first row the mean over layers, then each layer. Each panel is scaled to its own maximum.\n")
        out += [ctx.figure("captioner", f, "per-word attention maps") + "\n" for f in figures]
    return out


@section("scst", "## 5. SCST: reinforcement learning on CIDEr-D\n", "python main.py train-rl --preset {preset}")
def scst_section(ctx: Context, s: dict[str, Any]) -> str:
    cfg = s["config"]
    rl = cfg["rl"]
    xe = ""
    if rl.get("xe_weight"):
        refs = rl.get("xe_refs") or "all"
        xe = f", plus {rl['xe_weight']:g} x the cross-entropy of {refs} reference caption(s) per image"
    rows = {k: v for k, v in s["test"].items() if "distinct" in v}
    lines = [f"From the supervised captioner: {rl['samples']} samples per image at temperature "
             f"{rl['temperature']}, {rl['baseline']} baseline, entropy bonus {rl['entropy_bonus']}{xe}, learning rate "
             f"{cfg['train']['lr']:g}; {s['steps']:,} steps in {minutes(s['wall_time_s'])}; the checkpoint chosen on "
             f"dev CIDEr-D ({fmt(s['best_val_cider'])}). Test captions {_note(s)}.{_decoding(cfg)}\n",
             markdown_table(s["test"]), analysis_scst(s),
             *(["Variety and grounding of the same captions (bad endings: captions that end on a function word):\n",
                diagnostics_table(rows)] if rows else []),
             ablation_table(ctx.runs, "rl-abl-*", ctx.folder("scst"), differences, ctx.preset),
             *seed_table_lines(ctx.runs, ctx.preset),
             ctx.figure("scst", "curves.png", "SCST curves"), "",
             ctx.figure("scst", "gallery.png", "test images: supervised vs SCST captions, both by beam search")]
    return "\n".join(lines) + "\n"


def hardware_section(ctx: Context) -> str:
    lines = ["## Hardware and wall time\n", "| stage | device | CPU | cores | torch | wall time |",
             "|---|---|---|---|---|---|"]
    for stage in ("vit", "align", "gpt", "captioner", "blind", "scst"):
        s = ctx.summary(stage)
        if s and "machine" in s:
            m = s["machine"]
            lines.append(f"| {stage} | {m.get('device')} | {m.get('cpu', '-')} | {m.get('cpu_count', '-')} | "
                         f"{m.get('torch')} | {minutes(s['wall_time_s'])} |")
    r = ctx.summary("reverse")
    if r:
        lines.append(f"| reverse | cpu | - | - | - | {minutes(r['wall_time_s'])} |")
    total = sum(s["wall_time_s"] for st in ("reverse", "vit", "align", "gpt", "captioner", "blind", "scst")
                if (s := ctx.summary(st)))
    lines.append(f"\nIn all: {minutes(total)} of training and evaluation as each run logged it (`wall_time_s`, the "
                 f"final test scoring not included; a run that shared the cores with other jobs logged more).\n")
    return "\n".join(lines) + "\n"


SECTIONS = (tests_section, reverse_section, vit_section, gpt_section, captioner_section, scst_section)
