"""The operator approves drafts from a DM: Approve / Reject / Regenerate buttons on Telegram
(a real inline keyboard through PTB and the fake Bot API), and only operators may press them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from bots.service import PostApprovals
from db.posts import PostTable
from generators.text.lite import LiteTextGenerator
from persona.posts.planner import Planner
from persona.registry import SAMPLES, PersonaRegistry
from tests.bots.test_telegram import running, tg  # noqa: F401 - fixtures
from tests.persona.test_posts import _mira

OPERATOR = 4242


async def _wait(pred, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        if pred():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_the_operator_approves_rejects_and_regenerates_drafts_with_buttons(store, embedder, tg, tmp_path):  # noqa: F811
    import yaml

    data = yaml.safe_load((SAMPLES / "mira.yaml").read_text())
    data["posts"] = _mira(approval=True).posts.model_dump(mode="json")
    (tmp_path / "mira.yaml").write_text(yaml.safe_dump(data))
    registry = PersonaRegistry([tmp_path])
    mira = registry.get("mira")
    assert mira.posts is not None and mira.posts.approval
    await store.ensure_persona("mira", mira.name, {}, None)
    posts = PostTable(store)
    planner = Planner(store, posts, LiteTextGenerator(embedder))
    made = await planner.plan(mira, now=datetime(2030, 7, 6, 8, tzinfo=timezone.utc))
    assert [p.status for p in made] == ["pending"] * 3
    async with running(tg, handler=lambda m: asyncio.sleep(0)) as bot:
        approvals = PostApprovals(posts, planner, registry, {("telegram", "mira"): bot.adapter},
                                  {"telegram": frozenset({str(OPERATOR)})})
        bot.adapter.on_choice = approvals.on_choice
        assert await approvals.ask() == 3
        assert await approvals.ask() == 0  # each draft is shown once
        dms = tg.sent_to(OPERATOR)
        assert len(dms) == 3
        first = dms[0]
        buttons = [b["text"] for b in first.fields["reply_markup"]["inline_keyboard"][0]]
        assert buttons == ["Approve", "Reject", "Regenerate"] and made[0].text in first.text
        mid = first.result["message_id"]

        tg.push_callback(OPERATOR, "Stranger", mid, f"post:approve:{made[0].id}", user_id=777)
        assert await _wait(lambda: len(tg.callback_answers) == 1)
        assert "operators" in list(tg.callback_answers.values())[0]
        assert (await posts.get(made[0].id)).status == "pending"  # not by a stranger

        tg.push_callback(OPERATOR, "Op", mid, f"post:approve:{made[0].id}", user_id=OPERATOR)
        assert await _wait(lambda: len(tg.callback_answers) == 2)
        assert (await posts.get(made[0].id)).status == "approved"
        assert await _wait(lambda: "Approved" in tg.message(OPERATOR, mid)["text"])
        assert "reply_markup" not in tg.message(OPERATOR, mid)  # pressed once: the buttons go

        tg.push_callback(OPERATOR, "Op", dms[1].result["message_id"], f"post:reject:{made[1].id}", user_id=OPERATOR)
        assert await _wait(lambda: len(tg.callback_answers) == 3)
        assert (await posts.get(made[1].id)).status == "rejected"

        tg.push_callback(OPERATOR, "Op", dms[2].result["message_id"], f"post:regen:{made[2].id}", user_id=OPERATOR)
        assert await _wait(lambda: len(tg.callback_answers) == 4)
        again = await posts.get(made[2].id)
        assert again.status == "pending" and again.text != made[2].text
        assert await approvals.ask() == 1  # the new draft goes to the operator again
        assert again.text in tg.sent_to(OPERATOR)[-1].text
    assert made[0].due_at > datetime.now(timezone.utc) + timedelta(days=365)


async def test_comments_under_a_post_are_answered_with_the_post_in_mind_and_reactions_are_counted(store, embedder, tg):  # noqa: F811
    from persona.posts.publisher import Publisher
    from tests.persona.test_posts import CHANNEL

    group = -1005550001111
    tg.add_channel(CHANNEL, "@midnightmenu")
    mira = _mira()
    await store.ensure_persona("mira", mira.name, {}, None)
    posts = PostTable(store)
    post = await Planner(store, posts, None).add(mira, "main", datetime.now(timezone.utc), approved=True,
                                                 text="Auntie Lo's pork buns are back at the night market tonight!")
    async with running(tg, store, embedder) as bot:
        async def on_reactions(platform, chat_id, message_id, counts, username):
            await posts.set_reactions(platform, [chat_id, f"@{username}"], message_id, counts)

        bot.adapter.on_reactions = on_reactions
        assert await Publisher(posts, {("telegram", "mira"): bot.adapter}).tick() == 1
        [sent] = tg.channel_posts(CHANNEL)
        fwd = tg.push_automatic_forward(group, CHANNEL, sent.result["message_id"])
        tg.push_message(group, "Zoe", "are the pork buns spicy?", chat_type="supergroup",
                        reply_to=fwd["message"]["message_id"], user_id=1001)
        [answer] = await tg.wait_for_sent(1, chat_id=group)
        tg.push_reaction_count(CHANNEL, sent.result["message_id"], {"👍": 12, "🔥": 3})
        for _ in range(100):
            if (await posts.get(post.id)).reactions:
                break
            await asyncio.sleep(0.05)
    [comment] = [m for m in bot.seen if m.chat_id == str(group)]
    assert comment.quote == post.text  # the reply was made knowing the post
    assert answer.reply_to == int(comment.message_id)  # answered in the thread, under the comment
    assert (await posts.get(post.id)).reactions == {"👍": 12, "🔥": 3}
