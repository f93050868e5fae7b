"""Renders an ANSI screen capture (`tmux capture-pane -e -p`) to a PNG, one fixed-size cell per
character, the way a terminal with a dark theme shows it.

Usage: render.py CAPTURE.ansi OUT.png [--cols N] [--rows N] [--title TEXT] [--font-size PX]

Understands the SGR codes tmux writes: 0 reset, 1 bold, 2 dim, 3 italic (ignored), 4 underline,
7 reverse, 22/23/24/27 their resets, 30–37/90–97 and 40–47/100–107 colours, 39/49 defaults,
38;5;n / 48;5;n (256 colours) and 38;2;r;g;b / 48;2;r;g;b. State carries from one line to the
next, as tmux writes it. Box-drawing and block characters are drawn as lines and rectangles so
that borders join across cells and rows; every other character comes from DejaVu Sans Mono
(Bold for bold).
"""

import argparse
import re
import sys
import unicodedata

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"

# VS Code's dark terminal palette (the 16 ANSI colours), its background and foreground.
PALETTE16 = [
    "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#e5e5e5",
]
BG = "#1e1e1e"
FG = "#cccccc"
FRAME = "#2d2d30"  # the window around the terminal
TITLE_FG = "#9d9d9d"


def hex_rgb(h: str) -> tuple:
    return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))


def xterm256(n: int) -> tuple:
    if n < 16:
        return hex_rgb(PALETTE16[n])
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + 10 * (n - 232)
    return (v, v, v)


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None  # None: default; else an (r, g, b)
        self.bg = None
        self.bold = self.dim = self.reverse = self.underline = False

    def copy(self):
        s = Style()
        s.__dict__.update(self.__dict__)
        return s

    def apply(self, params: list) -> None:
        i = 0
        while i < len(params):
            p = params[i]
            if p == 0:
                self.reset()
            elif p == 1:
                self.bold = True
            elif p == 2:
                self.dim = True
            elif p == 4:
                self.underline = True
            elif p == 7:
                self.reverse = True
            elif p == 22:
                self.bold = self.dim = False
            elif p == 24:
                self.underline = False
            elif p == 27:
                self.reverse = False
            elif 30 <= p <= 37:
                self.fg = xterm256(p - 30)
            elif 90 <= p <= 97:
                self.fg = xterm256(p - 90 + 8)
            elif 40 <= p <= 47:
                self.bg = xterm256(p - 40)
            elif 100 <= p <= 107:
                self.bg = xterm256(p - 100 + 8)
            elif p == 39:
                self.fg = None
            elif p == 49:
                self.bg = None
            elif p in (38, 48) and i + 1 < len(params):
                if params[i + 1] == 5 and i + 2 < len(params):
                    c = xterm256(params[i + 2])
                    i += 2
                elif params[i + 1] == 2 and i + 4 < len(params):
                    c = tuple(params[i + 2:i + 5])
                    i += 4
                else:
                    c = None
                if p == 38:
                    self.fg = c
                else:
                    self.bg = c
            # anything else (italic, blink, …) is ignored
            i += 1

    def colours(self) -> tuple:
        fg = self.fg or hex_rgb(FG)
        bg = self.bg or hex_rgb(BG)
        if self.reverse:
            fg, bg = bg, fg
        if self.dim:
            fg = tuple(round(f * 0.55 + b * 0.45) for f, b in zip(fg, bg))
        return fg, bg


CSI = re.compile(r"\x1b\[([0-9;:]*)([A-Za-z])")


def parse(text: str) -> list:
    """The screen as rows of (char, Style) cells."""
    style = Style()
    rows = []
    for line in text.split("\n"):
        row = []
        pos = 0
        for m in CSI.finditer(line):
            for ch in line[pos:m.start()]:
                row.append((ch, style.copy()))
            if m.group(2) == "m":
                params = [int(x) if x else 0 for x in re.split("[;:]", m.group(1))] if m.group(1) else [0]
                style.apply(params)
            pos = m.end()
        for ch in line[pos:]:
            row.append((ch, style.copy()))
        # other escapes (none expected) are dropped with the ESC itself
        rows.append([(c, s) for c, s in row if c != "\x1b" and unicodedata.category(c) != "Cc"])
    return rows


# Box drawing: for each character, which arms it has (up, down, left, right) and their weight
# (1 light, 2 heavy); rounded corners are drawn as square ones.
def arms(ch: str):
    table = {
        "─": "0011", "│": "1100", "┌": "0101", "┐": "0110", "└": "1001", "┘": "1010",
        "├": "1101", "┤": "1110", "┬": "0111", "┴": "1011", "┼": "1111",
        "╭": "0101", "╮": "0110", "╰": "1001", "╯": "1010", "╴": "0010", "╶": "0001",
        "╵": "1000", "╷": "0100",
        "━": "0022", "┃": "2200", "┏": "0202", "┓": "0220", "┗": "2002", "┛": "2020",
        "┣": "2202", "┫": "2220", "┳": "0222", "┻": "2022", "╋": "2222",
    }
    return table.get(ch)


DOUBLE = {"═": "0011", "║": "1100", "╔": "0101", "╗": "0110", "╚": "1001", "╝": "1010",
          "╠": "1101", "╣": "1110", "╦": "0111", "╩": "1011", "╬": "1111"}

BLOCKS = {"█": (0, 0, 1, 1), "▀": (0, 0, 1, 0.5), "▄": (0, 0.5, 1, 1), "▌": (0, 0, 0.5, 1),
          "▐": (0.5, 0, 1, 1)}
for k, ch in enumerate("▁▂▃▄▅▆▇"):
    BLOCKS[ch] = (0, 1 - (k + 1) / 8, 1, 1)


def draw_box(d, ch, x, y, cw, chh, fg) -> bool:
    a = arms(ch)
    double = False
    if a is None and ch in DOUBLE:
        a, double = DOUBLE[ch], True
    if a is not None:
        cx, cy = x + cw // 2, y + chh // 2
        for (arm, w) in zip("udlr", a):
            w = int(w)
            if not w:
                continue
            t = 1 if w == 1 else 2
            offs = [-2, 1] if double else [0]
            for o in offs:
                if arm == "u":
                    d.rectangle([cx + o, y, cx + o + t - 1, cy + (t - 1)], fill=fg)
                elif arm == "d":
                    d.rectangle([cx + o, cy, cx + o + t - 1, y + chh - 1], fill=fg)
                elif arm == "l":
                    d.rectangle([x, cy + o, cx + (t - 1), cy + o + t - 1], fill=fg)
                elif arm == "r":
                    d.rectangle([cx, cy + o, x + cw - 1, cy + o + t - 1], fill=fg)
        return True
    if ch in BLOCKS:
        x0, y0, x1, y1 = BLOCKS[ch]
        d.rectangle([x + round(x0 * cw), y + round(y0 * chh), x + round(x1 * cw) - 1, y + round(y1 * chh) - 1],
                    fill=fg)
        return True
    return False


def render(text: str, out: str, cols: int, rows_n: int, title: str, size: int) -> None:
    screen = parse(text.rstrip("\n"))
    if rows_n:
        screen = (screen + [[]] * rows_n)[:rows_n]
    cols = cols or max((len(r) for r in screen), default=0)
    font = ImageFont.truetype(FONT, size)
    bold = ImageFont.truetype(FONT_BOLD, size)
    cw = round(font.getlength("M"))
    ascent, descent = font.getmetrics()
    chh = round((ascent + descent) * 1.08)
    baseline = (chh - (ascent + descent)) // 2

    pad = 18
    bar = 34 if title else 0
    w = cols * cw + 2 * pad
    h = len(screen) * chh + 2 * pad + bar
    img = Image.new("RGB", (w, h), FRAME)
    d = ImageDraw.Draw(img)
    # the terminal area, with rounded window corners and a title bar
    d.rounded_rectangle([0, 0, w - 1, h - 1], radius=10, fill=BG, outline="#3c3c3c")
    if title:
        d.rounded_rectangle([0, 0, w - 1, bar + 10], radius=10, fill=FRAME)
        d.rectangle([0, bar, w - 1, bar + 10], fill=BG)
        d.line([0, bar, w - 1, bar], fill="#3c3c3c")
        for k, c in enumerate(("#ff5f57", "#febc2e", "#28c840")):
            cx = 20 + k * 20
            d.ellipse([cx - 6, bar // 2 - 6, cx + 6, bar // 2 + 6], fill=c)
        tf = ImageFont.truetype(FONT, 13)
        tw = tf.getlength(title)
        d.text(((w - tw) / 2, bar // 2), title, font=tf, fill=TITLE_FG, anchor="lm")

    top = bar + pad
    for r, row in enumerate(screen):
        y = top + r * chh
        row = row + [(" ", Style())] * (cols - len(row))
        for c, (ch, st) in enumerate(row[:cols]):
            x = pad + c * cw
            fg, bg = st.colours()
            if bg != hex_rgb(BG):
                d.rectangle([x, y, x + cw - 1, y + chh - 1], fill=bg)
            if ch == " ":
                pass
            elif not draw_box(d, ch, x, y, cw, chh, fg):
                f = bold if st.bold else font
                d.text((x, y + baseline), ch, font=f, fill=fg)
            if st.underline:
                d.line([x, y + chh - 2, x + cw - 1, y + chh - 2], fill=fg)
    img.save(out, optimize=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("out")
    ap.add_argument("--cols", type=int, default=0)
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--title", default="")
    ap.add_argument("--font-size", type=int, default=15)
    a = ap.parse_args()
    with open(a.capture, encoding="utf-8") as f:
        text = f.read()
    render(text, a.out, a.cols, a.rows, a.title, a.font_size)


if __name__ == "__main__":
    sys.exit(main())
