"""A self-contained HTML report: figures embedded as data URIs, tables, configs and notes.

The report is one file that opens in any browser without a network: images are base64
``data:`` URIs, the style sheet is inline, and no font, script or link points outside the
file. A report is a title plus a sequence of sections, rendered in order:

- `Text`: a heading and paragraphs (e.g. an honest statement of what the keypoints do).
- `MetricTable`: metrics per model side by side, with the controls (random, static
  template...) as separate, greyed columns.
- `Table`: any small table given as rows.
- `Figure`: an image (PIL image, (H, W, 3) uint8 array, PNG or GIF bytes, or a path to a PNG
  or GIF file) with a caption.
- `Config`: named configuration dicts, shown as JSON.
- `Timings`: named durations in seconds.

Example::

    write_report(
        "runs/demo", "PermaKey demo on SpaceInvaders",
        Text("What the keypoints do", ["..."]),
        MetricTable({"permakey": {"F1@2": 0.64}}, controls={"random": {"F1@2": 0.30}}),
        Figure("Keypoints on clean test frames", "runs/demo/show/figure2_clean.png"),
        Config({"permakey": run_config}),
        Timings({"collect": 31.0, "train permakey": 300.2}),
    )
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from permakey.fileio import write_text_atomic

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GIF_MAGIC = (b"GIF87a", b"GIF89a")

_CSS = """
:root { --ink: #1d1f23; --muted: #5b616b; --rule: #d9dce1; --band: #f4f5f7; --accent: #2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
.subtitle { color: var(--muted); margin: 0 0 8px; }
nav ol { margin: 8px 0 0; padding-left: 22px; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; }
p { margin: 8px 0; max-width: 80ch; }
table { border-collapse: collapse; margin: 10px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--rule); text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid var(--ink); vertical-align: bottom; }
tbody tr:nth-child(even) { background: var(--band); }
.control { color: var(--muted); font-style: italic; }
.caption { color: var(--muted); font-size: 0.92em; margin: 4px 0 12px; }
figure { margin: 12px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--band); padding: 10px 12px; overflow-x: auto; font-size: 0.85em;
  font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
footer { margin-top: 48px; color: var(--muted); font-size: 0.85em; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def format_value(value: Any) -> str:
    """How a table cell shows a value: floats to 3 significant decimals, None as a dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level, keys joined by " / " (e.g. "recall@2 / Player")."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix} / {key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def _heading(heading: str) -> str:
    return f"<h2>{_esc(heading)}</h2>\n" if heading else ""


def _table_html(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    control_columns: frozenset[int] = frozenset(),
    css_class: str = "",
) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="control"' if i in control_columns else ""
        return f"<{tag}{cls}>{_esc(format_value(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "\n".join(
        "<tr>" + "".join(cell("th" if i == 0 else "td", i, v) for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"


@dataclass(frozen=True)
class Text:
    """A heading and paragraphs of plain text (HTML in it is escaped).

    Attributes:
        heading: section heading ("" for none).
        paragraphs: one string per paragraph, or a single string.
    """

    heading: str
    paragraphs: Sequence[str] | str = ()

    def html(self) -> str:
        paras = [self.paragraphs] if isinstance(self.paragraphs, str) else self.paragraphs
        return _heading(self.heading) + "".join(f"<p>{_esc(p)}</p>\n" for p in paras)


@dataclass(frozen=True)
class Table:
    """A table given as rows; the first column is the row header.

    Attributes:
        header: column names.
        rows: rows of values (numbers are formatted, strings shown as they are), each as long
            as ``header``.
        heading: section heading.
        caption: text under the table.
        control_columns: names in ``header`` of columns to grey out as controls (e.g. the
            evaluation's "random K=7" and "template: ..." columns).
        css_class: class of the <table> element ("metrics" for a metric table).
    """

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    heading: str = ""
    caption: str = ""
    control_columns: Sequence[str] = ()
    css_class: str = ""

    def __post_init__(self):
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(
                    f"table row {list(row)!r} has {len(row)} cells, header {len(self.header)}"
                )
        unknown = set(self.control_columns) - set(self.header)
        if unknown:
            raise ValueError(f"control columns {sorted(unknown)} are not in the header")

    def html(self) -> str:
        caption = f'<p class="caption">{_esc(self.caption)}</p>\n' if self.caption else ""
        controls = frozenset(i for i, h in enumerate(self.header) if h in self.control_columns)
        table = _table_html(self.header, self.rows, controls, self.css_class)
        return _heading(self.heading) + table + caption


@dataclass(frozen=True)
class MetricTable:
    """Metrics of several models side by side, one column per model, then the controls.

    Values may be numbers, None (shown as a dash), or strings such as "no ground truth";
    nested mappings (e.g. per-category recall) become rows named "metric / category".

    Attributes:
        models: model name -> metric name -> value.
        controls: control name (random, static template, error-map peaks...) -> metric name ->
            value; shown greyed after the models so a number is never read without them.
        heading: section heading.
        caption: text under the table (say on which frames, with which noise).
        metric_order: rows in this order first; other metrics follow in first-seen order.
    """

    models: Mapping[str, Mapping[str, Any]]
    controls: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    heading: str = "Metrics"
    caption: str = ""
    metric_order: Sequence[str] = ()

    def html(self) -> str:
        columns = {n: flatten(v) for n, v in self.models.items()}
        controls = {n: flatten(v) for n, v in self.controls.items()}
        clash = set(columns) & set(controls)
        if clash:
            raise ValueError(f"names used both as model and control: {sorted(clash)}")
        columns.update(controls)
        metrics = list(self.metric_order)
        for values in columns.values():
            metrics.extend(m for m in values if m not in metrics)
        header = ["metric", *self.models, *(f"control: {n}" for n in self.controls)]
        rows = [[m, *(values.get(m) for values in columns.values())] for m in metrics]
        control_cols = frozenset(range(1 + len(self.models), len(header)))
        caption = f'<p class="caption">{_esc(self.caption)}</p>\n' if self.caption else ""
        table = _table_html(header, rows, control_cols, css_class="metrics")
        return _heading(self.heading) + table + caption


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_data_uri(image: Image.Image | np.ndarray | bytes | str | os.PathLike) -> str:
    """A ``data:`` URI of an image.

    Args:
        image: a PIL image or (H, W, 3) uint8 array (encoded as PNG), PNG or GIF bytes, or a
            path to a PNG or GIF file (embedded as it is, so an animated GIF stays animated).

    Returns:
        ``data:image/png;base64,...`` or ``data:image/gif;base64,...``.

    Raises:
        ValueError: bytes or a file that are neither PNG nor GIF.
    """
    if isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
        source = str(image)
    elif isinstance(image, (bytes, bytearray)):
        data, source = bytes(image), "image bytes"
    else:
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        data, source = _png_bytes(pil), "image"
    if data.startswith(_PNG_MAGIC):
        mime = "image/png"
    elif data[:6] in _GIF_MAGIC:
        mime = "image/gif"
    else:
        raise ValueError(f"{source}: not a PNG or GIF image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass(frozen=True)
class Figure:
    """An embedded image with a heading and a caption.

    Attributes:
        heading: section heading ("" to continue the previous section).
        image: PIL image, (H, W, 3) uint8 array, PNG/GIF bytes, or a path to a PNG/GIF file.
        caption: text under the image.
        width: display width in CSS pixels (default: natural size, shrunk to fit the page).
    """

    heading: str
    image: Any
    caption: str = ""
    width: int | None = None

    def html(self) -> str:
        uri = image_data_uri(self.image)
        alt = _esc(self.caption or self.heading or "figure")
        width = f' width="{int(self.width)}"' if self.width else ""
        caption = (
            f'<figcaption class="caption">{_esc(self.caption)}</figcaption>' if self.caption else ""
        )
        return (
            _heading(self.heading)
            + f'<figure><img src="{uri}" alt="{alt}"{width}>{caption}</figure>\n'
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    return str(value)


@dataclass(frozen=True)
class Config:
    """Named configuration dicts, each shown as indented JSON in a collapsible block.

    Attributes:
        configs: name (e.g. "PermaKey run") -> JSON-serialisable mapping (dataclasses should be
            passed through `dataclasses.asdict` first; other objects are shown with str()).
        heading: section heading.
        open: show the blocks expanded.
    """

    configs: Mapping[str, Any]
    heading: str = "Configuration"
    open: bool = False

    def html(self) -> str:
        opened = " open" if self.open else ""
        blocks = "".join(
            f"<details{opened}><summary>{_esc(name)}</summary><pre>"
            + _esc(json.dumps(cfg, indent=2, sort_keys=True, default=_json_default))
            + "</pre></details>\n"
            for name, cfg in self.configs.items()
        )
        return _heading(self.heading) + blocks


def format_seconds(seconds: float) -> str:
    """Durations a reader can take in: "42.0 s", "3 min 05 s", "1 h 02 min"."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class Timings:
    """Named wall-clock durations, with their total.

    Attributes:
        seconds: step name -> duration in seconds.
        heading: section heading.
        caption: text under the table (say on which machine).
    """

    seconds: Mapping[str, float]
    heading: str = "Timings"
    caption: str = ""

    def html(self) -> str:
        rows = [[name, format_seconds(s)] for name, s in self.seconds.items()]
        if len(rows) > 1:
            rows.append(["total", format_seconds(sum(self.seconds.values()))])
        return Table(["step", "wall time"], rows, self.heading, self.caption).html()


Section = Text | Table | MetricTable | Figure | Config | Timings


def render_report(title: str, *sections: Section, subtitle: str = "") -> str:
    """The report as one HTML document (a string); see `write_report`."""
    headed = [s for s in sections if getattr(s, "heading", "")]
    anchors = {id(s): f"s{i}" for i, s in enumerate(headed, start=1)}
    parts = []
    for section in sections:
        body = section.html()
        if id(section) in anchors:  # give headed sections an anchor for the contents list
            body = body.replace("<h2>", f'<h2 id="{anchors[id(section)]}">', 1)
        parts.append(f"<section>\n{body}</section>\n")
    contents = ""
    if len(headed) > 2:
        items = "".join(
            f'<li><a href="#{anchors[id(s)]}">{_esc(s.heading)}</a></li>' for s in headed
        )
        contents = f"<nav><ol>{items}</ol></nav>\n"
    sub = f'<p class="subtitle">{_esc(subtitle)}</p>\n' if subtitle else ""
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_esc(title)}</h1>\n{sub}{contents}{''.join(parts)}"
        f"<footer>Written by permakey on {_esc(stamp)}. Self-contained: no external resources."
        "</footer>\n</main>\n</body>\n</html>\n"
    )


def write_report(
    out_dir: str | os.PathLike,
    title: str,
    *sections: Section,
    subtitle: str = "",
    filename: str = "report.html",
) -> Path:
    """Writes a self-contained HTML report into ``out_dir``, atomically.

    Args:
        out_dir: folder of the report (created if missing).
        title: page title and top heading.
        *sections: `Text`, `Table`, `MetricTable`, `Figure`, `Config` and `Timings` sections,
            rendered in order.
        subtitle: a line under the title (e.g. game, machine, date of the data).
        filename: name of the HTML file inside ``out_dir``.

    Returns:
        The path of the written file.
    """
    for section in sections:
        if not isinstance(section, (Text, Table, MetricTable, Figure, Config, Timings)):
            raise TypeError(f"not a report section: {type(section).__name__}")
    path = Path(out_dir) / filename
    write_text_atomic(path, render_report(title, *sections, subtitle=subtitle))
    return path
