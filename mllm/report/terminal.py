"""A picture of a terminal session: console text with its ANSI colours (as pytest prints with --color=yes) drawn
into a PNG in DejaVu Sans Mono (the font matplotlib ships), so no browser and no system font is needed.

The marks of failed, erroring and skipped tests are drawn in red (pytest prints skips in yellow): in the per-file
progress lines (F, E, s), on the FAILED/ERROR/SKIPPED lines of the short summary and in the closing line's counts.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.terminal_theme import TerminalTheme
from rich.text import Text

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
THEME = TerminalTheme((24, 26, 33), (220, 223, 228),
                      [(40, 42, 54), (255, 85, 85), (80, 250, 123), (241, 250, 140), (98, 160, 234),
                       (255, 121, 198), (139, 233, 253), (230, 230, 230)],
                      [(98, 114, 164), (255, 110, 110), (105, 255, 148), (255, 255, 165), (130, 190, 255),
                       (255, 146, 223), (164, 255, 255), (255, 255, 255)])
RED = "bold #ff5555"
PROGRESS = re.compile(r"^(?:\S+\.py )?[.sFExX]+ *(?:\[ *\d+%\])?$")
BAD_LINE = re.compile(r"^(FAILED|ERROR|SKIPPED) ")
BAD_COUNT = re.compile(r"\d+ (?:failed|errors?|skipped)")


def mark_bad(line: Text) -> Text:
    """Colour the marks of failed, erroring and skipped tests in one console line red (in place; returned)."""
    plain = line.plain
    if PROGRESS.match(plain):
        start = plain.index(" ") + 1 if ".py " in plain else 0
        for i, ch in enumerate(plain[start:], start):
            if ch in "FEs":
                line.stylize(RED, i, i + 1)
    elif BAD_LINE.match(plain):
        line.stylize(RED)
    elif plain.startswith("=") and " in " in plain:
        for m in BAD_COUNT.finditer(plain):
            line.stylize(RED, m.start(), m.end())
    return line


def shorten(lines: list[Text], max_lines: int, where: str) -> list[Text]:
    """At most `max_lines`: the header and progress lines, a note naming `where` the rest is, then the end."""
    if len(lines) <= max_lines:
        return lines
    second_rule = next((i for i, line in enumerate(lines) if i > 0 and line.plain.startswith("==")), max_lines // 2)
    head = lines[:min(second_rule, max_lines - 12)]
    tail = lines[len(lines) - (max_lines - len(head) - 1):]
    left_out = len(lines) - len(head) - len(tail)
    return [*head, Text(f"... {left_out} lines not shown here (all of them: {where}) ...", style="italic #8be9fd"),
            *tail]


def render_terminal(console_text: str, out: Path, command: str, max_lines: int = 110, columns: int = 100,
                    where: str = "the console log", size: int = 15) -> Path:
    """Draw `$ command` and `console_text` (ANSI colours kept, bad marks in red) as a terminal window PNG."""
    lines = [mark_bad(line) for line in Text.from_ansi(console_text.rstrip("\n")).split("\n")]
    prompt = Text.assemble(("$ ", "bold #50fa7b"), (command, "bold"))
    lines = [*prompt.wrap(Console(width=columns), columns), *shorten(lines, max_lines, where)]
    regular = ImageFont.truetype(str(FONTS / "DejaVuSansMono.ttf"), size)
    bold = ImageFont.truetype(str(FONTS / "DejaVuSansMono-Bold.ttf"), size)
    cell, line_h, pad, bar = regular.getlength("M"), round(size * 1.4), 18, 30
    width = round(2 * pad + cell * max(columns, *(line.cell_len for line in lines)))
    image = Image.new("RGB", (width, bar + 2 * pad + line_h * len(lines)), tuple(THEME.background_color))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, bar), fill=(48, 50, 60))
    for i, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
        draw.ellipse((14 + 22 * i, 9, 26 + 22 * i, 21), fill=colour)
    draw.text((width / 2, bar / 2), "pytest", font=regular, fill=(190, 190, 190), anchor="mm")
    console = Console(width=10_000, color_system="truecolor")
    y = bar + pad
    for line in lines:
        x = float(pad)
        for segment in line.render(console):
            style, text = segment.style, segment.text.replace("\t", "    ")
            fill = tuple(THEME.foreground_color)
            if style is not None and style.color is not None:
                fill = tuple(style.color.get_truecolor(THEME))
            if style is not None and style.bgcolor is not None:
                back = style.bgcolor.get_truecolor(THEME, foreground=False)
                draw.rectangle((x, y, x + cell * len(text), y + line_h), fill=tuple(back))
            draw.text((x, y), text, font=bold if style is not None and style.bold else regular, fill=fill)
            x += cell * len(text)
        y += line_h
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out
