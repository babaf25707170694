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


def test_rss_and_atom_feeds_become_scripts_without_their_html(tmp_path):
    from generators.video.news import read_feed

    rss = tmp_path / "feed.xml"
    rss.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>City</title>
<item><title>Lanterns tonight</title><description>&lt;p&gt;The festival starts at &lt;b&gt;six&lt;/b&gt;. Bring friends! More later.&lt;/p&gt;</description></item>
<item><title>Rain</title><description>Light rain until Sunday.</description></item></channel></rss>""")
    items = read_feed(str(rss))
    assert [i.headline for i in items] == ["Lanterns tonight", "Rain"]
    assert items[0].text == "The festival starts at six. Bring friends!"  # no HTML, the first two sentences
    atom = tmp_path / "atom.xml"
    atom.write_text("""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>
<entry><title>Market</title><summary>Open late on Friday.</summary></entry></feed>""")
    assert read_feed(str(atom))[0].text == "Open late on Friday."
    (tmp_path / "junk.xml").write_text("not xml <<")
    with pytest.raises(VideoInputError, match="not an RSS or Atom feed"):
        read_feed(str(tmp_path / "junk.xml"))


def test_vchar_video_news_reads_a_feed(tmp_path):
    rss = tmp_path / "feed.xml"
    rss.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>City</title>
<item><title>Lanterns tonight</title><description>The festival starts at six.</description></item>
</channel></rss>""")
    res = vchar(tmp_path, "video", "news", "mira", "--feed", str(rss), "--height", "240", "-o", str(tmp_path / "n.mp4"))
    assert "1 items" in res.stdout and probe(tmp_path / "n.mp4").has_audio
    both = vchar(tmp_path, "video", "news", "mira", "-o", str(tmp_path / "x.mp4"), check=False)
    assert both.returncode == 1 and "--script FILE or --feed" in both.stderr
