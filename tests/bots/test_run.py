"""`vchar run` as operators start it: only environment variables, both platforms at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.telegram_server import FakeTelegramServer

VCHAR = str(Path(sys.executable).with_name("vchar"))


def _persona_with_portrait(tmp_path: Path) -> Path:
    import yaml

    from generators.image.testing import portrait_on_canvas
    from persona.registry import SAMPLES

    folder = tmp_path / "personas"
    folder.mkdir()
    data = yaml.safe_load((SAMPLES / "mira.yaml").read_text())
    data["identity"]["portraits"] = [str(portrait_on_canvas(folder / "face.png"))]
    (folder / "mira.yaml").write_text(yaml.safe_dump(data))
    return folder


async def test_run_serves_telegram_and_discord_at_once_and_stops_cleanly(tmp_path):
    import io

    from PIL import Image

    async with FakeTelegramServer(token="123456:TESTTOKEN") as tg, FakeDiscordServer(bot_name="Mira") as dc:
        env = {
            **os.environ,
            "VCHAR_DATA_DIR": str(tmp_path / "data"),
            "VCHAR_TELEGRAM_TOKEN": "123456:TESTTOKEN",
            "VCHAR_TELEGRAM_API_URL": tg.api_url,
            "VCHAR_TELEGRAM_POLL_TIMEOUT": "1",
            "VCHAR_DISCORD_TOKEN": dc.token,
            "VCHAR_DISCORD_API_URL": dc.api_url,
            "VCHAR_DISCORD_GATEWAY_URL": dc.gateway_url,
            "VCHAR_PERSONAS_DIR": str(_persona_with_portrait(tmp_path)),
        }
        env.pop("VCHAR_DATABASE_URL", None)
        proc = await asyncio.create_subprocess_exec(
            VCHAR, "run", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        try:
            tg.push_message(1001, "Zoe", "What's your favourite food?")
            for _ in range(600):  # the service starts (migrations, models) and connects
                if dc.connected or proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            assert dc.connected, "the Discord adapter never connected"
            dc.push_message(None, "Bo", "do you have any pets?", guild=False)
            tg_sent = await tg.wait_for_sent(1, timeout=60, chat_id=1001)
            dc_sent = await dc.wait_for_sent(1, timeout=60)
            assert "pork buns" in tg_sent[0].fields["text"]
            assert "Comet" in dc_sent[0].content
            assert tg.commands  # setMyCommands at start
            # Selfies arrive as photos with the character's caption on both platforms.
            tg.push_message(1002, "Zoe", "/selfie at the beach")
            dc.push_message(None, "Bo", "/selfie in the rain", guild=False)
            photo = (await tg.wait_for_sent(1, timeout=60, method="sendPhoto", chat_id=1002))[0]
            assert "beach" in photo.fields.get("caption", "").lower()
            assert Image.open(io.BytesIO(photo.file("photo").data)).format == "PNG"
            for _ in range(600):
                with_file = [m for m in dc.sent if m.files]
                if with_file:
                    break
                await asyncio.sleep(0.1)
            assert with_file and Image.open(io.BytesIO(with_file[0].files[0].data)).format == "PNG"
            assert "rain" in with_file[0].content.lower()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert b"Traceback" not in err
    # Each message answered exactly once.
    assert len(tg.sent_to(1001)) == 1
    assert len([m for m in dc.sent if "Comet" in m.content]) == 1


async def test_a_reply_on_the_wire_when_run_is_killed_is_answered_once_after_restart(tmp_path):
    """SIGKILL while the reply is in flight (the Bot API has the request and has not
    answered), then `vchar run` again on the same data: the message is answered, once."""
    async with FakeTelegramServer(token="123456:TESTTOKEN") as tg:
        env = {
            **os.environ,
            "VCHAR_DATA_DIR": str(tmp_path / "data"),
            "VCHAR_TELEGRAM_TOKEN": "123456:TESTTOKEN",
            "VCHAR_TELEGRAM_API_URL": tg.api_url,
            "VCHAR_TELEGRAM_POLL_TIMEOUT": "1",
            "VCHAR_OUTBOX_LEASE": "2",
            "VCHAR_OUTBOX_POLL": "0.5",
        }
        env.pop("VCHAR_DATABASE_URL", None)

        async def start():
            return await asyncio.create_subprocess_exec(
                VCHAR, "run", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env,
            )

        tg.hold_next("sendMessage")
        update = tg.push_message(1001, "Zoe", "What's your favourite food?")
        proc = await start()
        try:
            for _ in range(900):
                if tg.held or proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            assert tg.held, "the reply never went out"
            proc.kill()  # SIGKILL: no clean-up of any kind
            await proc.wait()
            proc = await start()
            [sent] = await tg.wait_for_sent(1, timeout=90, chat_id=1001)
            await asyncio.sleep(3)  # a second copy would come within a lease and a poll
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-3000:]
    assert "pork buns" in sent.text and sent.text == tg.held[0].text
    assert len(tg.sent_to(1001)) == 1
    assert tg.deliveries[update["update_id"]] >= 1


async def test_run_with_a_bad_telegram_token_says_so(tmp_path):
    async with FakeTelegramServer(token="123456:RIGHT") as tg:
        env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_TELEGRAM_TOKEN": "123456:WRONG",
               "VCHAR_TELEGRAM_API_URL": tg.api_url}
        proc = await asyncio.create_subprocess_exec(
            VCHAR, "run", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    text = err.decode()
    assert "Traceback" not in text and ("token" in text.lower() or "Unauthorized" in text)


def test_each_persona_with_a_token_gets_its_own_bot(tmp_path, monkeypatch):
    from bots.service import platform_adapters
    from bots.settings import Settings

    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "rook.yaml").write_text(
        "name: Captain Rook\nplatforms:\n  telegram: {token_env: ROOK_TG}\n  discord: {token_env: ROOK_DC}\n"
    )
    monkeypatch.setenv("ROOK_TG", "999:ROOK")
    monkeypatch.setenv("ROOK_DC", "rook.discord.token")
    s = Settings(data_dir=tmp_path / "data", personas_dir=personas, telegram_token="111:MIRA")
    bots = {(a.platform, a.persona) for a in platform_adapters(s)}
    assert bots == {("telegram", None), ("telegram", "captain-rook"), ("discord", "captain-rook")}
    monkeypatch.delenv("ROOK_DC")
    assert ("discord", "captain-rook") not in {(a.platform, a.persona) for a in platform_adapters(s)}
