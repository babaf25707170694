"""The news anchor: a bulletin from a script, with its cards, lower third and ticker."""

from __future__ import annotations

import numpy as np
import pytest

from generators.video import VideoInputError
from generators.video.mp4 import probe, read_frames
from generators.video.news import NewsItem, load_script, news_video
from persona.registry import SAMPLES
from tests.bots.test_cli import vchar


def _speech(text: str):
    sr = 22050
    t = np.arange(int(sr * (0.5 + 0.04 * len(text)))) / sr
    return (0.4 * np.sin(2 * np.pi * 190 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32), sr


def test_a_bulletin_has_a_card_then_the_anchor_for_each_item_and_a_ticker_that_moves(tmp_path):
    items = [NewsItem("Market opens early", "The night market opens at six."), NewsItem("Rain", "Rain all weekend.")]
    meta = news_video(f"{SAMPLES}/media/mira-portrait.png", items, _speech, tmp_path / "news.mp4", height=360,
                      cache_dir=tmp_path / "faces")
    p = probe(meta["path"])
    assert (p.width, p.height, p.has_audio) == (640, 360, True) and meta["items"] == 2
    expected = sum(20 + int(np.ceil(len(_speech(it.text)[0]) / 22050 * 25)) for it in items)
    assert p.frames == expected and abs(p.duration - expected / 25) < 0.1  # cards and speech, sound in step
    frames = list(read_frames(meta["path"])[0])
    ticker_a, ticker_b = frames[25][-20:], frames[26][-20:]
    assert not np.array_equal(ticker_a, ticker_b)  # the ticker scrolls
    card, anchor = frames[5], frames[30]
    centre = (slice(60, 200), slice(260, 380))
    assert anchor[centre].std() > card[centre].std() + 5  # a face where the card had plain studio


def test_a_script_that_is_not_a_list_of_items_is_refused_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("headline: only one\n")
    with pytest.raises(VideoInputError, match="YAML list of items"):
        load_script(bad)
    bad.write_text("- headline: no text\n")
    with pytest.raises(VideoInputError, match="item 1 needs a 'text'"):
        load_script(bad)
    res = vchar(tmp_path, "video", "news", "mira", "--script", str(bad), "-o", str(tmp_path / "n.mp4"), check=False)
    assert res.returncode == 1 and "needs a 'text'" in res.stderr
