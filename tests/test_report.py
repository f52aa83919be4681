"""The HTML report: self-contained, with the metric table and embedded images, in a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from permakey.visualisation import figures
from permakey.visualisation.report import (
    Config,
    Figure,
    MetricTable,
    Table,
    Text,
    Timings,
    format_seconds,
    format_value,
    image_data_uri,
    write_report,
)

GREEN = (0, 200, 0)


def _green_block() -> np.ndarray:
    image = np.full((120, 200, 3), 255, np.uint8)
    image[10:110, 10:190] = GREEN
    return image


def _sections(tmp_path):
    gif = tmp_path / "episode.gif"
    figures.save_gif([_green_block(), _green_block()[::-1].copy()], gif)
    png_bytes = io.BytesIO()
    Image.fromarray(_green_block()).save(png_bytes, format="PNG")
    return [
        Figure("Green block", _green_block(), caption="an array", width=400),
        Text("What the keypoints do", ["They sit on <b>shields</b> & scores.", "Second."]),
        MetricTable(
            {
                "permakey": {"F1@2": 0.64234, "recall@2": {"Player": 0.5, "Score": 1}},
                "transporter": {"F1@2": "no ground truth"},
            },
            controls={"random K=7": {"F1@2": 0.3}},
            caption="1000 clean test frames",
        ),
        Figure("From bytes", png_bytes.getvalue()),
        Figure("Animation", gif, caption="an episode"),
        Config({"permakey run": {"lr": 2e-4, "layers": [0, 1], "path": tmp_path}}),
        Timings({"collect": 31.25, "train": 312.0}),
        Table(
            ["game", "F1@2", "random"],
            [["SpaceInvaders", 0.64, "0.301"], ["Frostbite", None, "0.250"]],
            "Games",
            control_columns=["random"],
        ),
    ]


def _write(tmp_path):
    return write_report(tmp_path / "out", "Demo <report>", *_sections(tmp_path), subtitle="CPU")


def test_report_is_self_contained_with_table_and_images(tmp_path):
    path = _write(tmp_path)
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert '<table class="metrics">' in text
    assert "<th>permakey</th>" in text and '<th class="control">control: random K=7</th>' in text
    assert "<td>0.642</td>" in text and "<td>no ground truth</td>" in text
    assert "<th>recall@2 / Player</th>" in text and "<td>\u2014</td>" in text
    assert text.count('<img src="data:image/png;base64,') == 2  # the array and the PNG bytes
    assert text.count('<img src="data:image/gif;base64,') == 1
    # Text is escaped, not interpreted.
    assert (
        "&lt;b&gt;shields&lt;/b&gt; &amp; scores." in text
        and "<title>Demo &lt;report&gt;</title>" in text
    )
    assert '<th class="control">random</th>' in text and '<td class="control">0.301</td>' in text
    assert "5 min 12 s" in text and "total" in text and "&quot;lr&quot;: 0.0002" in text


def test_embedded_png_decodes_to_the_given_image(tmp_path):
    text = _write(tmp_path).read_text(encoding="utf-8")
    payload = re.search(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(payload))) as png:
        assert png.size == (200, 120)
        assert (np.asarray(png.convert("RGB")) == _green_block()).all()


def test_report_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="not a PNG or GIF"):
        image_data_uri(b"JFIF not supported")
    with pytest.raises(ValueError, match="cells"):
        Table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="not in the header"):
        Table(["a", "b"], [[1, 2]], control_columns=["c"])
    with pytest.raises(ValueError, match="both as model and control"):
        MetricTable({"x": {"m": 1}}, controls={"x": {"m": 2}}).html()
    with pytest.raises(TypeError, match="section"):
        write_report(tmp_path, "t", "just a string")
    assert not (tmp_path / "report.html").exists()


def test_value_formats():
    assert [format_value(v) for v in (0.123456, 3, None, True, float("nan"), 12345.6)] == [
        "0.123",
        "3",
        "\u2014",
        "yes",
        "n/a",
        "12,346",
    ]
    assert [format_seconds(s) for s in (4.26, 65, 3725)] == ["4.3 s", "1 min 05 s", "1 h 02 min"]


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    command = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    path = _write(tmp_path)
    shot = tmp_path / "shot.png"
    result = _chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=1200,900", path.resolve().as_uri()
    )
    assert shot.is_file(), f"no screenshot; chromium said: {result.stderr[-2000:]}"
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (900, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # text, rules, images: not blank
    # The first figure is a green block: seeing its colour means the data URI was decoded.
    green = np.all(np.abs(pixels.astype(int) - GREEN) <= 8, axis=-1)
    assert green.sum() > 100 * 180


@pytest.mark.slow
def test_report_dom_in_headless_chromium_has_table_and_images(tmp_path):
    path = _write(tmp_path)
    result = _chromium(tmp_path, "--dump-dom", path.resolve().as_uri())
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert '<table class="metrics">' in dom and "<td>0.642</td>" in dom
    assert dom.count("<img ") == 3 and dom.count('src="data:image/') == 3
