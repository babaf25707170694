"""Media requests as jobs: the character says it is on it, a worker makes the file, and
the finished file becomes a reply of its own, through the outbox.

``submit`` queues the job (one per asking message: the same message twice is one job)
and stores the acknowledgement. ``on_done`` runs wherever the job ran (this process or
a `vchar worker`): it records the files as media assets and stores the reply with them,
in the same transaction that marks the job done, so a job that ran twice is delivered
once. ``on_failed`` stores the in-character line for what went wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from db.jobs import JobTable
from db.store import Incoming, Store
from persona.outbox import reply_from_row
from persona.types import IncomingMessage, Reply

log = logging.getLogger(__name__)

ACKS = {
    "image": ("On it! Give me a moment to get the shot.", "Ooh, okay, let me set this up!", "One sec, getting my camera!"),
    "voice": ("Recording it for you, one sec!", "Give me a moment, clearing my throat...", "Okay, recording now!"),
    "music": ("Ooh, a song! Let me write it, give me a minute.",),
    "video": ("Filming it for you, this takes a minute!",),
}
CANCELLED = "Okay, I stopped working on it."
NOTHING_TO_CANCEL = "I'm not working on anything for you right now."
WAIT_LOCAL = 600.0  # s the terminal chat waits for a job before giving up on it


def requester(msg: IncomingMessage, persona_id: str) -> str:
    return f"{msg.platform}:{msg.user_id}:{persona_id}"[:200]


def keep_upload(path: str, uploads: Path | None, tag: str) -> str:
    """Copy a person's photo out of the adapter's temporary folder into the media root
    (a worker on another machine reads it from there), named by its content."""
    if uploads is None:
        raise OSError("no uploads folder is set up for media jobs")
    src = Path(path)
    h = hashlib.sha256(src.read_bytes()).hexdigest()[:24]
    uploads.mkdir(parents=True, exist_ok=True)
    dest = uploads / f"{tag}-{h}{src.suffix.lower()[:6] or '.img'}"
    if not dest.exists():
        shutil.copyfile(src, dest)
    return str(dest)


class MediaJobs:
    def __init__(self, store: Store, jobs: JobTable, *, bell: Callable[[str, int], Awaitable[None]] | None = None,
                 on_reply: Callable[[], None] | None = None, uploads: Path | None = None):
        self.store = store
        self.jobs = jobs
        self.bell = bell  # rings whoever runs jobs (the in-process worker, or taskiq)
        self.on_reply = on_reply  # a finished job stored a reply: the outbox may look now
        self.uploads = uploads
        self.local = None  # generators.jobs.Worker in this process (no queue URL): it takes jobs directly

    async def submit(
        self, *, persona_id: str, persona_db_id: int, incoming: Incoming, msg: IncomingMessage, kind: str,
        params: dict[str, Any], caption: str | None, text: str, failure: dict[str, str], seed: int = 0,
        upload: str | None = None,
    ) -> Reply:
        key = f"{persona_id}:{msg.platform}:{msg.chat_id}:{msg.message_id or incoming.message_id}:{kind}"[:200]
        ack_line = ACKS.get(kind, ACKS["image"])[seed % len(ACKS.get(kind, ACKS["image"]))]
        ack_id = None
        if msg.platform != "local":  # stored first: its delivered message shows the job's progress
            ack_id = await self.store.store_reply(incoming.conversation_id, incoming.message_id, ack_line)
        payload = {
            "params": params,
            "reply": {"conversation_id": incoming.conversation_id, "incoming_id": incoming.message_id,
                      "persona_db_id": persona_db_id, "caption": caption, "text": text, "failure": failure,
                      "upload": upload, "ack_id": ack_id, "ack": ack_line},
        }
        who = requester(msg, persona_id)
        if self.local is not None:  # the in-process worker: started here when it has a free slot
            job, new = await self.local.enqueue_here(
                kind, lambda by: self.jobs.enqueue(kind, payload, key, requester=who, claimed_by=by, lease=self.local.lease))
        else:
            job, new = await self.jobs.enqueue(kind, payload, key, requester=who)
        if new and self.local is None and self.bell is not None:
            try:
                await self.bell(kind, job.id)
            except Exception as exc:  # noqa: BLE001 - the job is in the table: workers find it anyway
                log.warning("job %d queued, but the bell did not ring (%s); workers will find it by looking", job.id, exc)
        if msg.platform == "local":
            # the terminal chat answers each line in turn: it waits for the file itself
            reply = await self.wait_reply(job.id, persona_id, msg.chat_id)
            if reply is not None:
                return reply
        if ack_id is None:  # the terminal waited and gave up: say it is still coming
            ack_id = await self.store.store_reply(incoming.conversation_id, incoming.message_id, ack_line)
        return Reply(text=ack_line, chat_id=msg.chat_id, persona=persona_id, reply_to_message_id=msg.message_id,
                     message_db_id=ack_id)

    async def wait_reply(self, job_id: int, persona_id: str, chat_id: str, timeout: float = WAIT_LOCAL) -> Reply | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            job = await self.jobs.get(job_id)
            if job is None:
                return None
            rid = (job.result or {}).get("reply_id")
            if job.status in ("done", "failed", "cancelled") and rid:
                row = await self.store.message(int(rid))
                if row is None:
                    return None
                row = {**row, "platform_chat_id": chat_id, "reply_to": None}
                return reply_from_row(row, persona_id)
            if job.status == "cancelled":
                return None
            await asyncio.sleep(0.05)
        return None

    async def cancel(self, msg: IncomingMessage, persona_id: str) -> int:
        """/cancel: stop the person's queued and running jobs; returns how many."""
        n = 0
        for job in await self.jobs.active_for(requester(msg, persona_id)):
            if await self.jobs.cancel(job.id):
                n += 1
                self._drop_upload(job.payload)
        return n

    async def on_done(self, job, result: dict[str, Any], worker: str) -> None:
        if "post" in job.payload:  # a scheduled post's media: the publisher collects it from the job
            await self.jobs.finish(job.id, worker, result)
            return
        r = job.payload["reply"]
        files = [f for f in result.get("files", []) if isinstance(f, dict) and f.get("path")]
        if not files:
            await self.on_failed(job, "failed")
            return
        records = [
            {"kind": f["kind"], "path": f["path"], "mime": f.get("mime"), "duration": f.get("duration"),
             "caption": _caption(r.get("caption"), f.get("note")) if i == 0 else None,
             **{k: f[k] for k in ("title", "performer", "thumbnail", "width", "height") if f.get(k)}}
            for i, f in enumerate(files)
        ]
        assets = [
            {"kind": f["kind"], "path": f["path"], "mime": f.get("mime") or "application/octet-stream",
             "generator": f.get("generator"), "parameters": f.get("metadata") or {}, "seed": f.get("seed"),
             "duration": f.get("duration"), "sha256": await asyncio.to_thread(_sha256, f["path"])}
            for f in files
        ]
        rid = await self.jobs.complete_with_reply(
            job.id, worker, result, persona_db_id=r["persona_db_id"], conversation_id=r["conversation_id"],
            incoming_id=r["incoming_id"], text=r.get("text") or "", assets=assets, records=records,
        )
        if rid is None:
            log.info("job %d finished elsewhere or was cancelled; this result is dropped", job.id)
            return
        self._drop_upload(job.payload)
        if self.on_reply is not None:
            self.on_reply()

    async def on_failed(self, job, code: str) -> None:
        if "post" in job.payload:  # the post fails with the job's error when it is collected
            return
        r = job.payload["reply"]
        failure = r.get("failure") or {}
        line = failure.get(code) or failure.get("failed") or "Sorry, that didn't work out. Try me again later?"
        rid = await self.store.store_reply(r["conversation_id"], r["incoming_id"], line, sweep_after=0)
        await self.jobs.set_reply(job.id, rid)
        self._drop_upload(job.payload)
        if self.on_reply is not None:
            self.on_reply()

    @staticmethod
    def _drop_upload(payload: dict[str, Any]) -> None:
        up = (payload.get("reply") or {}).get("upload")
        if up:
            Path(up).unlink(missing_ok=True)


def _caption(caption: str | None, note: str | None) -> str | None:
    """The caption chosen when the request came in, and what the job found worth saying."""
    if not note:
        return caption
    return f"{caption}\n{note}" if caption else note


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
