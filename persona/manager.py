"""The persona manager: one chat turn from a stored message to a stored reply."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from dataclasses import dataclass, field

from db.store import Incoming, Store
from generators.embed import EmbedBatcher, Embedder
from generators.text.base import ChatMessage, TextGenerationError, TextGenerator, TextRequest
from persona.card import Persona
from persona.cleaning import clean_reply
from persona.commands import MEDIA_COMMANDS, Ask, dispatch, memory
from persona.limits import Rate, RateLimiter
from persona.lorebook import triggered_entries
from persona.memory import MemoryStore, extract_facts, parse_model_memories
from persona.prompt import Turn, build_messages, system_prompt, trim_for_model
from persona.registry import PersonaRegistry
from persona.requests import detect
from persona.types import IncomingMessage, Reply

log = logging.getLogger(__name__)

OnText = Callable[[str], Awaitable[None]]

MEMORY_QUESTION = re.compile(
    r"\bwhat do you (remember|know|recall) about me\b|\bwhat have i told you\b|\bwhat do you remember\b", re.I
)

# Stand-ins for a failed backend. An odd number of lines: in a one-to-one chat a person's
# messages are usually two ids apart (message, reply) and `_fallback` picks by id, so an
# even count would give the same line every time.
FALLBACK_LINES = (
    "Sorry, my head's somewhere else for a second. Say that again in a moment?",
    "Ugh, give me a minute, my thoughts just scattered. Try me again?",
    "Hold on, I lost my train of thought. Ask me again in a bit?",
)

CHAT_LIMITED = "Whoa, you're typing faster than I can read! Give me a minute to catch up, okay?"
MEDIA_LIMITED = "I've made a lot of those for you lately. Ask me again a little later?"



@dataclass(frozen=True, slots=True)
class _Said:
    """A history line not read back from the database (this turn's own two messages)."""

    text: str
    role: str = "user"


@dataclass(frozen=True)
class ManagerConfig:
    context_tokens: int = 4096
    max_tokens: int = 300
    temperature: float = 0.8
    max_message_chars: int = 4000
    memory_every: int = 4
    memory_recall: int = 5
    history_rows: int = 60
    generation_timeout: float = 120.0
    chat_rate: Rate = Rate(20, 60)
    media_rate: Rate = Rate(5, 3600)
    # Platform user ids allowed admin commands, per platform ("telegram", "discord", "local").
    admins: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class _PersonaState:
    persona: Persona
    db_id: int
    examples: tuple = field(default_factory=tuple)


class PersonaManager:
    """Turns an IncomingMessage into a Reply, persisting both, for any adapter."""

    def __init__(
        self,
        store: Store,
        registry: PersonaRegistry,
        text: TextGenerator,
        embedder: Embedder,
        config: ManagerConfig | None = None,
        *,
        image=None,
        voice=None,
        music=None,
        video=None,
        voices_root=None,
        jobs=None,
    ):
        self.store = store
        self.registry = registry
        self.text = text
        self.embedder = embedder
        self.config = config or ManagerConfig()
        self.image = image  # an ImageGenerator, or None when no image backend is set up
        self.voice = voice  # a generators.voice.VoiceGenerator, or None
        self.music = music  # a generators.music backend (songs), or None
        self.video = video  # a generators.video backend (talking clips), or None
        self.voices_root = voices_root  # where `vchar voice set` keeps samples and consent
        # persona.media.MediaJobs: media made by workers (in this process or `vchar worker`);
        # None makes them inside the turn (the command line's own tools)
        self.jobs = jobs
        self.batcher = EmbedBatcher(embedder)
        self.memory = MemoryStore(store, embedder, batcher=self.batcher)
        self._states: dict[str, _PersonaState] = {}
        self._tasks: set[asyncio.Task] = set()
        self._voice_file_warned: set[str] = set()
        self.chat_limiter = RateLimiter(self.config.chat_rate)
        self.media_limiter = RateLimiter(self.config.media_rate)

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Register every persona in the database and release claims a crash left behind.
        A persona the database refuses is logged and skipped; the others still start."""
        for persona in self.registry:
            try:
                await self._state(persona)
            except Exception as exc:  # noqa: BLE001 - one bad persona must not stop the rest
                log.error("persona %s not started: the database refused it (%s)", persona.id, type(exc).__name__)
        released = await self.store.release_stale_claims()
        if released:
            log.warning("%d messages were being answered when the service stopped; they can be answered again", released)

    async def close(self) -> None:
        """Wait for background memory work, then close the text backend."""
        await self.drain()
        await self.text.aclose()

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _state(self, persona: Persona) -> _PersonaState:
        st = self._states.get(persona.id)
        if st is None or st.persona is not persona:
            db_id = await self.store.ensure_persona(
                persona.id, persona.name, persona.model_dump(mode="json"), str(self.registry.sources.get(persona.id, ""))
            )
            st = _PersonaState(persona, db_id)
            self._states[persona.id] = st
        return st

    async def persona_db_id(self, persona_id: str) -> int:
        """The persona's row in the database (registered now if it is new)."""
        return (await self._state(self.registry.get(persona_id))).db_id

    # -- a turn -----------------------------------------------------------------------

    async def handle(self, msg: IncomingMessage, *, on_text: OnText | None = None) -> Reply | None:
        """Store the message, then answer it. None means no reply is due (a duplicate
        delivery, a blocked person). ``on_text`` (optional) is awaited with each piece of
        the reply as the text backend streams it (the studio shows it as it comes); the
        Reply is the cleaned whole."""
        persona = self.registry.get(msg.persona)
        if not self._may_speak(persona, msg):
            log.debug("%s is not allowed in %s chat %s; ignored", persona.id, msg.platform, msg.chat_id)
            return None
        st = await self._state(persona)
        incoming = await self.store.store_incoming(
            st.db_id,
            platform=msg.platform,
            chat_id=msg.chat_id,
            chat_kind=msg.chat_kind,
            chat_title=msg.chat_title,
            user_id=msg.user_id,
            user_name=msg.user_name,
            text=msg.text,
            platform_message_id=msg.message_id,
            reply_to_platform_id=msg.reply_to_message_id,
            media=[{"kind": a.kind, "mime": a.mime, "name": a.name, "url": a.url, "size": a.size} for a in msg.attachments],
            memory_every=self.config.memory_every,
        )
        if incoming.state == "duplicate":
            log.info("message %s in %s:%s was delivered again; already answered", msg.message_id, msg.platform, msg.chat_id)
            return None
        if incoming.relationship.blocked:
            await self.store.mark_incoming(incoming.message_id, "ignored")
            return None
        user_name = self._user_name(incoming, msg)
        command, _, arg = msg.text.strip().partition(" ")
        name = command[1:].split("@")[0].lower() if command.startswith("/") and len(command) > 1 else ""
        if not name:  # "send me a pic of you at the beach": the character's own choice to send one
            name, arg = detect(self, msg.text) or ("", arg)
        limiter = self.media_limiter if name in MEDIA_COMMANDS else self.chat_limiter
        verdict = "allowed" if self.is_admin(persona, msg) else limiter.hit((persona.id, msg.platform, msg.user_id))
        if verdict != "allowed":
            if verdict == "silent":
                await self.store.mark_incoming(incoming.message_id, "limited")
                return None
            notice = MEDIA_LIMITED if limiter is self.media_limiter else CHAT_LIMITED
            rid = await self.store.store_reply(incoming.conversation_id, incoming.message_id, notice, incoming_status="limited")
            return Reply(text=notice, chat_id=msg.chat_id, persona=persona.id, reply_to_message_id=msg.message_id, message_db_id=rid)
        if name:
            reply = await dispatch(Ask(self, st, incoming, msg, name, arg.strip(), user_name))
            if reply is not None:
                return reply
        if MEMORY_QUESTION.search(msg.text):
            ask = Ask(self, st, incoming, msg, "memory", "", user_name)
            return await ask.say(await memory(ask))
        return await self._converse(st, incoming, msg, user_name, on_text=on_text)

    async def regenerate(self, persona_id: str, reply_id: int, *, on_text: OnText | None = None) -> Reply | None:
        """Answer a person's message again (a swipe): the reply ``reply_id`` is kept as an
        alternative and a new one is written for the message it answered. Only the latest
        text reply of a conversation can be regenerated; None when this one cannot."""
        persona = self.registry.get(persona_id)
        st = await self._state(persona)
        found = await self.store.reply_context(reply_id)
        if found is None or found["persona_id"] != st.db_id:
            return None
        rel = await self.store.relationship(st.db_id, found["user_id"])
        if rel is None:
            return None
        await self.store.set_alternative(reply_id, "swiped")
        incoming = Incoming(found["incoming_id"], found["conversation_id"], found["user_id"], rel, "retry")
        msg = IncomingMessage(platform=found["platform"], chat_id=found["chat_id"], user_id=found["platform_user_id"],
                              user_name=found["user_name"], text=found["text"], message_id=found["platform_message_id"],
                              persona=persona.id, chat_kind=found["chat_kind"])
        # another seed: sampling backends (and the lite one's choices) give another answer
        return await self._converse(st, incoming, msg, self._user_name(incoming, msg), on_text=on_text, remember=False,
                                    seed=reply_id)

    def is_admin(self, persona: Persona, msg: IncomingMessage) -> bool:
        conf = getattr(persona.platforms, msg.platform, None)
        return msg.user_id in self.config.admins.get(msg.platform, frozenset()) or (
            conf is not None and msg.user_id in conf.admin_ids
        )

    def _may_speak(self, persona: Persona, msg: IncomingMessage) -> bool:
        """Groups and channels: only those the persona's platform settings allow (any, if none listed)."""
        conf = getattr(persona.platforms, msg.platform, None)
        if msg.chat_kind == "private" or conf is None or not conf.allowed_chats:
            return True
        return msg.chat_id in conf.allowed_chats

    async def admits(self, msg: IncomingMessage, *, media: bool = True) -> bool:
        """Whether a message would be handled at all: the chat is allowed, the person is
        not blocked, and their rate limit (the media one for a photo command) is not spent.
        Adapters ask this before downloading anything a message carries; nothing is
        counted or stored."""
        try:
            persona = self.registry.get(msg.persona)
        except LookupError:
            return False
        if not self._may_speak(persona, msg):
            return False
        if self.is_admin(persona, msg):
            return True
        limiter = self.media_limiter if media else self.chat_limiter
        if limiter.exhausted((persona.id, msg.platform, msg.user_id)):
            return False
        uid = await self.store.find_user(msg.platform, msg.user_id)
        if uid is None:
            return True
        st = await self._state(persona)
        rel = await self.store.relationship(st.db_id, uid)
        return rel is None or not rel.blocked

    def _user_name(self, incoming: Incoming, msg: IncomingMessage) -> str:
        for fact in incoming.relationship.facts:
            if isinstance(fact, dict) and fact.get("kind") == "name":
                return fact["value"]
        return msg.user_name or "friend"

    async def _converse(self, st: _PersonaState, incoming: Incoming, msg: IncomingMessage, user_name: str, *,
                        on_text: OnText | None = None, remember: bool = True, seed: int | None = None) -> Reply:
        persona, cfg = st.persona, self.config
        if remember:  # facts the person states are stored in the background while the reply is made
            self._spawn(self._remember_rules(st, incoming, msg.text, user_name))
        history = await self.store.history(incoming.conversation_id, cfg.history_rows, before_id=incoming.message_id)
        said = trim_for_model(msg.text, cfg.max_message_chars)
        # The embedding runs in a worker thread (NumPy releases the GIL) so other turns go on.
        query = (await self.batcher.embed([said[:2000]]))[0]
        recalled = await self.memory.recall(
            st.db_id, incoming.user_id, query, cfg.memory_recall, version=incoming.relationship.memory_version
        )
        facts = tuple(t for t, _ in recalled)
        lore: tuple[str, ...] = ()
        if persona.lorebook and persona.lorebook.entries:
            scan = [h.text for h in history[-4:]] + [said]
            # in a worker thread: a big book's scan must not hold up other chats
            lore = tuple(e.content for e in await asyncio.to_thread(triggered_entries, persona.lorebook, scan))
        if msg.quote:  # a comment under the character's post (or a reply to its words): what they talk about
            lore = (*lore, f"{user_name} is answering this, which {persona.name} posted: \"{msg.quote[:1500]}\"")
        examples = persona.examples(user_name)  # parsed once, for the prompt and for the lite backend
        system = system_prompt(persona, user_name, facts=facts, lore=lore, examples=examples,
                               relationship_note=self._relationship_note(incoming, user_name))
        turns = [Turn(h.role, h.text) for h in history if h.role in ("user", "assistant") and h.text]
        budget = cfg.context_tokens - cfg.max_tokens
        messages = build_messages(
            system, turns, said, budget_tokens=budget, count_tokens=self.text.count_tokens, group=msg.chat_kind != "private"
        )
        request = TextRequest(
            messages=messages,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            stop=(f"\n{user_name}:", "\nUser:"),
            char_name=persona.name,
            user_name=user_name,
            examples=examples,
            greetings=tuple(persona.render(g, user_name) for g in persona.greetings),
            facts=facts,
            lore=lore,
            description=persona.render(persona.description, user_name),
            seed=seed,
        )
        started = time.perf_counter()
        try:
            made = self.text.generate(request) if on_text is None else self._streamed(request, on_text)
            raw = await asyncio.wait_for(made, cfg.generation_timeout)
        except (TextGenerationError, asyncio.TimeoutError, OSError) as exc:
            log.error("text backend %s failed for message %d: %s", self.text.name, incoming.message_id, exc or type(exc).__name__)
            return await self._fallback(st, incoming, msg, str(exc) or type(exc).__name__)
        except Exception as exc:  # a backend bug must not silence the character
            log.exception("text backend %s crashed for message %d", self.text.name, incoming.message_id)
            return await self._fallback(st, incoming, msg, f"{type(exc).__name__}: {exc}")
        log.debug("generated in %.1f ms", (time.perf_counter() - started) * 1000)
        text = clean_reply(raw, persona, user_name)
        if not text:
            # Cleaning only takes things out of a reply; empty means the backend gave nothing sayable.
            log.warning("text backend %s gave nothing to say for message %d: %r", self.text.name, incoming.message_id, raw[:200])
            return await self._fallback(st, incoming, msg, "the backend's reply had nothing to say")
        reply = await self._finish(st, incoming, msg, text)
        if remember and self.text.name != "lite" and incoming.memory_due:
            self._spawn(self._remember_model(st, incoming, user_name, [*history, _Said(msg.text), _Said(text, "assistant")]))
        return reply

    async def _streamed(self, request: TextRequest, on_text: OnText) -> str:
        """The reply as the backend streams it, each piece handed to ``on_text`` on the way."""
        pieces = []
        async for piece in self.text.stream(request):
            pieces.append(piece)
            await on_text(piece)
        return "".join(pieces)

    def _relationship_note(self, incoming: Incoming, user_name: str) -> str:
        rel = incoming.relationship
        if rel.message_count <= 1:
            return f"This is the first time {user_name} has talked to you."
        return f"You have exchanged {rel.message_count} messages with {user_name} since {rel.first_seen:%B %Y}."

    async def _finish(self, st: _PersonaState, incoming: Incoming, msg: IncomingMessage, text: str) -> Reply:
        rid = await self.store.store_reply(incoming.conversation_id, incoming.message_id, text)
        return Reply(text=text, chat_id=msg.chat_id, persona=st.persona.id, reply_to_message_id=msg.message_id, message_db_id=rid)

    async def _fallback(self, st: _PersonaState, incoming: Incoming, msg: IncomingMessage, error: str) -> Reply:
        """An in-character stand-in; the message stays "failed" so a redelivery or retry answers it."""
        text = FALLBACK_LINES[incoming.message_id % len(FALLBACK_LINES)]
        rid = await self.store.store_reply(
            incoming.conversation_id, incoming.message_id, text, status="fallback", incoming_status="failed", error=error[:2000]
        )
        return Reply(text=text, chat_id=msg.chat_id, persona=st.persona.id, reply_to_message_id=msg.message_id,
                     fallback=True, message_db_id=rid)

    def voice_profile(self, persona: Persona):
        """The persona's voice: only a profile made here by `vchar voice set`, whose sample
        passed the sample checks and whose consent record was made on this installation.
        A sample and consent written into a persona file are not enough: a file can
        claim anything, and point at any file on the machine."""
        from generators.voice.profile import load_voice_profile

        if self.voices_root is not None:
            stored = load_voice_profile(self.voices_root, persona.id)
            if stored is not None:
                return stored
        if persona.identity.voice.sample and persona.id not in self._voice_file_warned:
            self._voice_file_warned.add(persona.id)
            log.warning("%s: the voice sample named in its persona file is not used; give it a voice with "
                        "`vchar voice set %s SAMPLE` (checks the sample and records consent)", persona.id, persona.id)
        return None

    async def forget(self, persona_id: str, platform: str, platform_user_id: str) -> dict | None:
        """Delete everything a persona holds about a person, the files made for them
        included. None if it never met them."""
        st = await self._state(self.registry.get(persona_id))
        uid = await self.store.find_user(platform, platform_user_id)
        if uid is None:
            return None
        await self.drain()  # memory work in flight must not re-add what is deleted
        counts = await self.store.forget_user(st.db_id, uid)
        self.memory.forget(st.db_id, uid)
        for path in counts.pop("files", []):
            # a clip's or song's thumbnail lies beside it (an /animate thumbnail shows their photo)
            for f in {Path(path), Path(path).with_name(Path(path).stem + ".thumb.jpg")}:
                try:
                    f.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not delete a forgotten person's file: %s", exc.strerror or exc)
        log.info("forgot %s:%s for %s: %s", platform, platform_user_id, persona_id, counts)
        return counts

    async def forget_memory(self, persona_id: str, uid: int, memory_id: int) -> bool:
        """Erase one thing a persona remembers about a person (``uid``: their user row)."""
        st = await self._state(self.registry.get(persona_id))
        await self.drain()
        gone = await self.store.delete_memory(st.db_id, uid, memory_id)
        if gone:
            self.memory.forget(st.db_id, uid)  # this process's recall cache reloads too
        return gone

    # -- memory -----------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remember_rules(self, st: _PersonaState, incoming: Incoming, text: str, user_name: str) -> None:
        try:
            facts = extract_facts(text[: self.config.max_message_chars], user_name if user_name != "friend" else "")
            if not facts:
                return
            name = next((f.name for f in facts if f.name), None)
            if name:
                rel_facts = [f for f in incoming.relationship.facts if not (isinstance(f, dict) and f.get("kind") == "name")]
                await self.store.update_relationship(
                    st.db_id, incoming.user_id, facts=[*rel_facts, {"kind": "name", "value": name}]
                )
            await self.memory.add(
                st.db_id, incoming.user_id, [(f.text, f.importance, "fact") for f in facts], incoming.message_id
            )
        except Exception:
            log.exception("could not store memories from message %d", incoming.message_id)

    async def _remember_model(self, st: _PersonaState, incoming: Incoming, user_name: str, history: list) -> None:
        """Every few turns: ask the model for a summary and the facts it noticed."""
        try:
            history = history[-(self.config.memory_every * 2 + 2) :]
            transcript = "\n".join(
                f"{user_name if h.role == 'user' else st.persona.name}: {h.text[:500]}" for h in history
            )
            request = TextRequest(
                messages=(
                    ChatMessage("system", "You write memory notes for a character. Answer with JSON only."),
                    ChatMessage(
                        "user",
                        f"Conversation:\n{transcript}\n\nReturn {{\"summary\": one sentence on what {user_name} and "
                        f"{st.persona.name} talked about, \"facts\": [short third-person facts about {user_name}, "
                        f"using the name {user_name}]}}.",
                    ),
                ),
                max_tokens=200,
                temperature=0.2,
            )
            summary, facts = parse_model_memories(await self.text.generate(request))
            items = [(f, 0.7, "fact") for f in facts]
            if summary:
                items.append((summary, 0.4, "summary"))
            await self.memory.add(st.db_id, incoming.user_id, items, incoming.message_id)
        except Exception as exc:
            log.warning("memory summary for message %d failed: %s", incoming.message_id, exc)
