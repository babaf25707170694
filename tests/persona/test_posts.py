"""Scheduled posts: the plan's slots (time zones, daylight saving), drafts that do not
repeat, and publishing exactly once through the real Telegram adapter and the fake Bot API."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from db.posts import PostTable
from persona.posts.plan import PostPlan, slot_times
from persona.posts.planner import Planner, similarity
from persona.posts.publisher import Publisher
from persona.registry import SAMPLES, PersonaRegistry
from tests.bots.test_telegram import running, tg  # noqa: F401 - fixtures

CHANNEL = -1001234567890
UTC = timezone.utc


def _plan(**kw) -> dict:
    base = {"zone": "Europe/London", "approval": False, "days_ahead": 7,
            "channels": {"main": {"platform": "telegram", "chat": "@midnightmenu"}},
            "slots": [{"channel": "main", "days": "mon,wed,fri", "at": "19:30"}],
            "pillars": [{"topic": "the night market's best stall this week", "weight": 3},
                        {"topic": "what is in the sky tonight", "weight": 1}],
            "formats": {"text": 1}}
    base.update(kw)
    return base


def _mira(**plan):
    mira = PersonaRegistry([SAMPLES]).get("mira")
    return mira.model_copy(update={"posts": PostPlan(**_plan(**plan))})


def test_slots_are_wall_clock_times_that_daylight_saving_neither_skips_nor_doubles():
    plan = PostPlan(**_plan(slots=[{"channel": "main", "at": "01:30"}]))
    spring = slot_times(plan, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    # 01:30 does not exist in London on 29 March 2026 (01:00 -> 02:00): posted at 02:30 BST, once
    assert [s.at for s in spring] == [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                                      datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    autumn = slot_times(plan, datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC))
    # 01:30 happens twice on 25 October: posted at the first, once
    assert [s.at for s in autumn] == [datetime(2026, 10, 24, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                                      datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
    cron = PostPlan(**_plan(slots=[{"channel": "main", "cron": "0 12 * * sat"}]))
    week = slot_times(cron, datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC))
    assert [s.at for s in week] == [datetime(2026, 7, 4, 11, tzinfo=UTC), datetime(2026, 7, 11, 11, tzinfo=UTC)]


@pytest.mark.parametrize("bad, says", [
    ({"zone": "Mars/Olympus"}, "unknown time zone"),
    ({"slots": [{"channel": "main", "cron": "61 * * * *"}]}, "cron expression"),
    ({"slots": [{"channel": "main", "at": "25:00"}]}, "HH:MM"),
    ({"slots": [{"channel": "elsewhere", "at": "10:00"}]}, "not among the channels"),
    ({"channels": {"main": {"platform": "telegram", "chat": "midnightmenu"}}}, "chat id"),
])
def test_a_bad_plan_is_refused_with_what_is_wrong(bad, says):
    with pytest.raises(ValidationError, match=says):
        PostPlan(**_plan(**bad))


async def _persona_row(store, persona):
    return await store.ensure_persona(persona.id, persona.name, {}, None)


async def test_a_week_is_drafted_once_in_character_and_no_two_posts_are_alike(store, embedder):
    from generators.text.lite import LiteTextGenerator

    mira = _mira(approval=True)
    await _persona_row(store, mira)
    posts = PostTable(store)
    planner = Planner(store, posts, LiteTextGenerator(embedder))
    now = datetime(2026, 7, 6, 8, tzinfo=UTC)  # a Monday
    made = await planner.plan(mira, now=now)
    assert len(made) == 3 and {p.status for p in made} == {"pending"}  # Mon, Wed, Fri; waiting for approval
    assert [p.due_at for p in made] == [datetime(2026, 7, d, 18, 30, tzinfo=UTC) for d in (6, 8, 10)]
    assert await planner.plan(mira, now=now) == []  # planning again makes nothing twice
    texts = [p.text for p in made]
    assert all(t and p.content["generator"] == "lite-template" for t, p in zip(texts, made))
    assert max(similarity(a, b) for i, a in enumerate(texts) for b in texts[i + 1:]) < 0.55
    assert all(("night market" in t) or ("sky tonight" in t) for t in texts)  # about its pillars


async def _published(store, tg, persona, *, approve=True, at=None, clock=None, **kw):  # noqa: F811
    posts = PostTable(store)
    await _persona_row(store, persona)
    planner = Planner(store, posts, None)
    post = await planner.add(persona, "main", at or datetime.now(UTC), text=kw.pop("text", "Dumplings at nine!"),
                             approved=approve)
    return posts, planner, post


async def test_a_post_for_now_is_published_once_by_two_publishers(store, tg):  # noqa: F811
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira()
    posts, planner, post = await _published(store, tg, mira)
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        a = Publisher(posts, {("telegram", "mira"): bot.adapter}, planner=planner, worker="a")
        b = Publisher(posts, {("telegram", "mira"): bot.adapter}, planner=planner, worker="b")
        done = await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
    assert sum(done) == 1
    [sent] = tg.channel_posts(CHANNEL)
    assert sent.text == "Dumplings at nine!" and sent.result["chat"]["type"] == "channel"
    row = await posts.get(post.id)
    assert row.status == "published" and row.message_ids == [str(sent.result["message_id"])]


async def test_a_publisher_killed_mid_send_leaves_the_post_unconfirmed_not_posted_twice(store, tg):  # noqa: F811
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira()
    posts, planner, post = await _published(store, tg, mira)
    tg.hold_next("sendMessage")
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        first = Publisher(posts, {("telegram", "mira"): bot.adapter}, worker="first", lease=2)
        task = asyncio.create_task(first.tick())
        for _ in range(200):
            if tg.held:
                break
            await asyncio.sleep(0.02)
        task.cancel()  # the process dies with the request on the wire
        with pytest.raises(asyncio.CancelledError):
            await task
        later = lambda: datetime.now(UTC) + timedelta(seconds=5)  # noqa: E731 - past the lease
        told = []

        async def notify(p, line):
            told.append(line)

        second = Publisher(posts, {("telegram", "mira"): bot.adapter}, worker="second", clock=later, notify=notify)
        assert await second.tick() == 0
        assert await second.tick() == 0
    row = await posts.get(post.id)
    assert row.status == "unconfirmed" and "check the channel" in row.error
    assert tg.channel_posts(CHANNEL) == [] and len(tg.held) == 1  # one request left; none sent again
    assert len(told) == 1


async def test_a_claim_that_died_before_sending_is_taken_over_and_published(store, tg):  # noqa: F811
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira()
    posts, planner, post = await _published(store, tg, mira)
    [claimed] = await posts.claim_due("dead", 2)  # claimed, then the process died
    assert claimed.id == post.id
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        pub = Publisher(posts, {("telegram", "mira"): bot.adapter}, worker="alive")
        assert await pub.tick() == 0  # the lease still runs
        pub.clock = lambda: datetime.now(UTC) + timedelta(seconds=5)
        assert await pub.tick() == 1
    assert len(tg.channel_posts(CHANNEL)) == 1 and (await posts.get(post.id)).status == "published"


async def test_a_channel_the_bot_cannot_post_in_fails_with_the_reason_and_the_operator_is_told_once(store, tg):  # noqa: F811
    tg.add_channel(CHANNEL, "@midnightmenu", can_post=False)
    mira = _mira()
    posts, planner, post = await _published(store, tg, mira)
    told = []

    async def notify(p, line):
        told.append((p.id, line))

    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        pub = Publisher(posts, {("telegram", "mira"): bot.adapter}, notify=notify)
        await pub.tick()
        await pub.tick()
    row = await posts.get(post.id)
    assert row.status == "failed" and "not a member of the channel" in row.error
    assert len(told) == 1 and "could not be published" in told[0][1]


async def test_a_5xx_is_tried_again_later_and_then_published(store, tg):  # noqa: F811
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira()
    posts, planner, post = await _published(store, tg, mira)
    tg.fail_next("sendMessage", n=2, status=502)
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        bot.adapter.send_attempts = 1
        pub = Publisher(posts, {("telegram", "mira"): bot.adapter})
        assert await pub.tick() == 0
        row = await posts.get(post.id)
        assert row.status == "approved" and row.next_try_at is not None and "502" in (row.error or "")
        assert await pub.tick() == 0  # not before its backoff
        pub.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
        for _ in range(4):
            await pub.tick()
            pub.clock = (lambda k: (lambda: datetime.now(UTC) + timedelta(hours=k)))(_ + 1)
    assert (await posts.get(post.id)).status == "published" and len(tg.channel_posts(CHANNEL)) == 1


async def test_a_post_missed_while_the_service_was_down_is_not_posted_late(store, tg):  # noqa: F811
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira(grace_minutes=30)
    posts, planner, post = await _published(store, tg, mira, at=datetime.now(UTC) - timedelta(hours=3))
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        assert await Publisher(posts, {("telegram", "mira"): bot.adapter}).tick() == 0
    assert (await posts.get(post.id)).status == "missed" and tg.channel_posts(CHANNEL) == []


async def test_a_long_caption_keeps_1024_characters_and_the_rest_follows(store, tg, tmp_path):  # noqa: F811
    from PIL import Image

    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira()
    text = ("The market was loud tonight. " * 60).strip()
    posts, planner, post = await _published(store, tg, mira, text=text)
    img = tmp_path / "p.png"
    Image.new("RGB", (64, 64), (200, 100, 50)).save(img)
    await posts.set_content(post.id, {**post.content, "format": "selfie",
                                      "media": [{"kind": "image", "path": str(img), "mime": "image/png"}]})
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        assert await Publisher(posts, {("telegram", "mira"): bot.adapter}).tick() == 1
    photo, rest = tg.channel_posts(CHANNEL)
    assert photo.method == "sendPhoto" and len(photo.fields["caption"]) <= 1024
    assert (photo.fields["caption"] + " " + rest.text) == text
    assert len((await posts.get(post.id)).message_ids) == 2


async def test_a_selfie_post_has_its_picture_made_by_a_job_then_waits_for_approval_then_goes_out(store, tg, tmp_path):  # noqa: F811
    from db.jobs import JobTable
    from generators.image import build_image_backend
    from generators.jobs import Worker
    from generators.jobs.runners import image_runner
    from persona.media import MediaJobs

    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira(approval=True, formats={"selfie": 1})
    await _persona_row(store, mira)
    posts, table = PostTable(store), JobTable(store)
    media = MediaJobs(store, table)
    worker = Worker(table, {"image": image_runner(build_image_backend("lite", out_dir=tmp_path / "images"))},
                    on_done=media.on_done, on_failed=media.on_failed)
    planner = Planner(store, posts, None, jobs=table, media={"image": True})
    post = await planner.add(mira, "main", datetime.now(UTC), fmt="selfie", topic="at the night market")
    assert post.status == "draft" and post.job_id is not None
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        pub = Publisher(posts, {("telegram", "mira"): bot.adapter}, planner=planner)
        assert await pub.tick() == 0  # its picture is not made yet
        assert await worker.run_one()
        assert await pub.tick() == 0  # made: now it waits for the operator
        row = await posts.get(post.id)
        assert row.status == "pending" and row.content["media"][0]["kind"] == "image"
        await posts.change(post.id, from_states=("pending",), status="approved", approved_by="operator")
        assert await pub.tick() == 1
    [photo] = tg.channel_posts(CHANNEL)
    assert photo.method == "sendPhoto" and photo.fields["caption"] == post.text


async def test_a_discord_announcement_post_is_sent_and_crossposted(store, tmp_path):
    from PIL import Image

    from tests.bots.test_discord import Bots
    from tests.fakes.discord_server import FakeDiscordServer

    async with FakeDiscordServer(bot_name="Mira") as fake:
        news = fake.add_channel("announcements", announcement=True)
        mira = _mira(channels={"main": {"platform": "telegram", "chat": "@midnightmenu"},
                               "news": {"platform": "discord", "chat": news}})
        posts = PostTable(store)
        await _persona_row(store, mira)
        planner = Planner(store, posts, None)
        post = await planner.add(mira, "news", datetime.now(UTC), text="New episode tonight: the noodle stall!",
                                 approved=True)
        img = tmp_path / "p.png"
        Image.new("RGB", (64, 64), (20, 100, 150)).save(img)
        await posts.set_content(post.id, {**post.content, "media": [{"kind": "image", "path": str(img),
                                                                     "mime": "image/png"}]})
        bots = Bots(fake)
        try:
            adapter = await bots.start(lambda m: asyncio.sleep(0))
            assert await Publisher(posts, {("discord", "mira"): adapter}).tick() == 1
        finally:
            for a in bots.adapters:
                await a.stop()
        [sent] = fake.channel_messages(news)
        assert sent.content == "New episode tonight: the noodle stall!" and sent.files
        assert fake.crossposts == [sent.id]
        assert (await posts.get(post.id)).message_ids == [sent.id]


async def test_a_news_post_reads_its_feed_when_due_and_goes_out_as_the_anchors_bulletin(store, tg, tmp_path):  # noqa: F811
    from db.jobs import JobTable
    from generators.jobs import Worker
    from generators.jobs.runners import video_runner
    from generators.video.lite import LiteVideo
    from generators.voice import VoiceGenerator, build_voice_backend
    from persona.media import MediaJobs

    feed = tmp_path / "feed.xml"
    feed.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>Lanternport</title>
<item><title>Night market opens late</title><description>Stalls stay open until two on Friday.</description></item>
</channel></rss>""")
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira(formats={"news": 1}, feed=str(feed), news_items=1,
                 slots=[{"channel": "main", "at": "19:30"}])
    await _persona_row(store, mira)
    posts, table = PostTable(store), JobTable(store)
    media = MediaJobs(store, table)
    voice = VoiceGenerator(build_voice_backend("lite", cache_dir=tmp_path / "vcache"), tmp_path / "notes")
    video = LiteVideo(tmp_path / "video")
    worker = Worker(table, {"video": video_runner(video, voice)}, on_done=media.on_done, on_failed=media.on_failed)
    planner = Planner(store, posts, None, jobs=table, media={"video": True})
    now = datetime.now(UTC)
    post = await planner.add(mira, "main", now, fmt="news", text="(news)")
    # a one-off news post carries the plan's feed the way a planned one does
    await posts.set_content(post.id, {**post.content, "feed": str(feed), "news_items": 1})
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        pub = Publisher(posts, {("telegram", "mira"): bot.adapter}, planner=planner, registry=_Reg(mira))
        await posts.change(post.id, status="approved")
        assert await pub.tick() == 0  # the feed is read; the bulletin is being filmed
        row = await posts.get(post.id)
        assert row.status == "draft" and "Night market opens late" in row.text
        assert await worker.run_one()
        assert await pub.tick() == 1
    [clip] = tg.channel_posts(CHANNEL)
    assert clip.method == "sendVideo" and clip.result["video"]["width"] == 1280
    assert "Stalls stay open until two on Friday." in clip.fields["caption"]


class _Reg:
    def __init__(self, persona):
        self.persona = persona

    def get(self, name):
        return self.persona


def test_a_news_plan_needs_a_feed():
    with pytest.raises(ValidationError, match="feed"):
        PostPlan(**_plan(formats={"news": 1}))


async def test_a_post_through_a_discord_webhook_appears_under_the_characters_name(store, tmp_path):
    from bots.discord_webhook import DiscordWebhookPoster
    from tests.fakes.discord_server import FakeDiscordServer

    async with FakeDiscordServer(bot_name="Mira") as fake:
        url = fake.add_webhook(fake.channel_id)
        mira = _mira(channels={"main": {"platform": "telegram", "chat": "@midnightmenu"},
                               "hook": {"platform": "discord-webhook", "chat": url}})
        posts = PostTable(store)
        await _persona_row(store, mira)
        post = await Planner(store, posts, None).add(mira, "hook", datetime.now(UTC), text="Live from the pier!",
                                                     approved=True)
        poster = DiscordWebhookPoster(lambda pid: "Mira Vale", api_url=fake.api_url)
        try:
            assert await Publisher(posts, {("discord-webhook", "*"): poster}).tick() == 1
        finally:
            await poster.disconnect()
        [sent] = fake.channel_messages(fake.channel_id)
        assert sent.content == "Live from the pier!" and sent.payload["username"] == "Mira Vale" and sent.via == "webhook"
        assert (await posts.get(post.id)).message_ids == [sent.id]


async def test_a_reply_to_the_characters_discord_post_carries_the_post(store):
    from tests.bots.test_discord import Bots
    from tests.fakes.discord_server import FakeDiscordServer

    async with FakeDiscordServer(bot_name="Mira") as fake:
        mira = _mira(channels={"main": {"platform": "telegram", "chat": "@midnightmenu"},
                               "server": {"platform": "discord", "chat": fake.channel_id}})
        posts = PostTable(store)
        await _persona_row(store, mira)
        await Planner(store, posts, None).add(mira, "server", datetime.now(UTC), text="Comet spotted over the pier!",
                                              approved=True)
        seen = []

        async def handler(msg):
            seen.append(msg)

        bots = Bots(fake)
        try:
            adapter = await bots.start(handler)
            assert await Publisher(posts, {("discord", "mira"): adapter}).tick() == 1
            [post] = fake.channel_messages(fake.channel_id)
            fake.push_message(None, "Zoe", "where exactly?", reply_to=post.id)
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.02)
        finally:
            for a in bots.adapters:
                await a.stop()
    [msg] = seen
    assert msg.quote == "Comet spotted over the pier!" and msg.text == "where exactly?"
