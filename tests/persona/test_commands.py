"""One command table: the help, Telegram's menu and Discord's slash commands agree with it,
and the manager knows every command in it."""

from __future__ import annotations

from bots.discord_adapter import SLASH_COMMANDS
from bots.telegram import COMMANDS as TELEGRAM_MENU
from generators.text.lite import LiteTextGenerator
from persona.commands import ADMIN_HELP, COMMANDS, HELP_TEXT, UNKNOWN_COMMAND
from persona.manager import ManagerConfig, PersonaManager
from tests.persona.test_manager import msg, registry  # noqa: F401 - fixture


def test_every_command_is_in_the_help_and_the_menus_that_can_carry_it():
    for c in COMMANDS:
        text = HELP_TEXT if c.who == "everyone" else ADMIN_HELP
        assert f"/{c.name}" in text, c.name
        assert (c.name in dict(TELEGRAM_MENU)) == (c.who == "everyone"), c.name
        assert (c.name in SLASH_COMMANDS) == (c.who == "everyone" and not c.caption_only), c.name
    assert {"cancel", "song", "video"} <= set(SLASH_COMMANDS) and "art" not in SLASH_COMMANDS
    assert all(len(d) <= 100 for d, _, _ in SLASH_COMMANDS.values())  # Discord's limit
    assert "/block ID" in ADMIN_HELP and "/cancel" in HELP_TEXT


async def test_the_manager_knows_every_command_in_the_table(store, registry, embedder):  # noqa: F811
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder,
                       ManagerConfig(admins={"telegram": frozenset({"boss"})}))
    await m.start()
    for i, c in enumerate(COMMANDS):
        if c.name == "forget":
            continue
        reply = await m.handle(msg(f"/{c.name}", user="boss", mid=f"c{i}"))
        assert reply is not None and reply.text != UNKNOWN_COMMAND.format(name=c.name), c.name
    assert (await m.handle(msg("/dance", user="boss", mid="x"))).text == UNKNOWN_COMMAND.format(name="dance")
    await m.close()
