"""The studio's jobs page: the latest media jobs with their progress (live, over
server-sent events), the queue's depth, and the operator's retry and cancel."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Literal

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import HTTPException
from sse_starlette import EventSourceResponse

from bots.studio.app import Id, back as _back, page as _page, context, templates

log = logging.getLogger(__name__)
router = APIRouter()

LIMIT = 100  # jobs the page lists
POLL = 1.0  # seconds between looks at the table for the live rows
STATUSES = ("queued", "running", "done", "failed", "cancelled")
Status = Literal["queued", "running", "done", "failed", "cancelled"]



def _when(t) -> str:
    return t.strftime("%d %b %H:%M:%S") if t else ""


def _view(job) -> dict:
    error = job.error or ""
    post = job.requester[5:] if (job.requester or "").startswith("post:") else None
    return {"id": job.id, "kind": job.kind, "status": job.status, "stage": job.stage,
            "percent": int(round(max(0.0, min(1.0, job.progress or 0.0)) * 100)),
            "requester": job.requester or "", "post": post if post and post.isdigit() else None,
            "created": _when(job.created_at), "started": _when(job.started_at), "finished": _when(job.finished_at),
            "error": error if len(error) <= 160 else error[:159] + "…", "error_full": error,
            "attempts": job.attempts, "max_attempts": job.max_attempts,
            "retry": job.status in ("failed", "cancelled"), "cancel": job.status in ("queued", "running")}


async def _rows(request: Request, status: str | None) -> list[dict]:
    return [_view(j) for j in await context(request).svc.jobs.list(status=status, limit=LIMIT)]


def _rows_html(request: Request, rows: list[dict], status: str | None) -> str:
    return templates.get_template("_jobs_rows.html").render(
        jobs=rows, csrf=getattr(request.state, "csrf", ""), status=status or "")


async def _jobs_page(request: Request, status: str | None, status_code: int = 200, **values):
    rows = await _rows(request, status)
    depth = sorted((await context(request).svc.jobs.depth()).items())
    events = "/jobs/events" + (f"?status={status}" if status else "")
    return _page(request, "jobs.html", status_code=status_code, section="jobs", jobs=rows, depth=depth,
                 status=status or "", statuses=STATUSES, events=events, **values)


@router.get("/jobs")
async def jobs_page(request: Request, status: Status | None = None):
    return await _jobs_page(request, status)


@router.get("/jobs/events")
async def jobs_events(request: Request, status: Status | None = None):
    """The job rows as rendered HTML (an event ``jobs``, its data a JSON string) and the
    queue's depth (``depth``): at once, then whenever they change."""
    async def events():
        last = last_depth = None
        depth_view = templates.get_template("_jobs_depth.html")
        while True:
            html = _rows_html(request, await _rows(request, status), status)
            if html != last:
                last = html
                yield {"event": "jobs", "data": json.dumps(html)}
            depth = depth_view.render(depth=sorted((await context(request).svc.jobs.depth()).items()))
            if depth != last_depth:
                last_depth = depth
                yield {"event": "depth", "data": json.dumps(depth)}
            await asyncio.sleep(POLL)

    return EventSourceResponse(events(), ping=15)


def _return_to(status: str) -> str:
    return "/jobs" + (f"?status={status}" if status in STATUSES else "")


async def _job(request: Request, job_id: int):
    job = await context(request).svc.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"There is no job {job_id}.")
    return job


async def _refused(request: Request, job_id: int, status: str, rule: str):
    """The jobs page again (409), saying the job's state now and that nothing changed."""
    job = await _job(request, job_id)
    return await _jobs_page(request, status if status in STATUSES else None, status_code=409, bad=True,
                            flash=f"Job {job_id} is {job.status}: {rule}. Nothing changed.")


@router.post("/jobs/{job_id}/retry")
async def job_retry(request: Request, job_id: Id, status: str = Form("")):
    job = await _job(request, job_id)
    if not await context(request).svc.jobs.retry(job_id):
        return await _refused(request, job_id, status, "only failed or cancelled jobs can be retried")
    bell = getattr(context(request).svc.media, "bell", None)
    if bell is not None:  # a worker takes it at once (they look at the table every few seconds anyway)
        try:
            await bell(job.kind, job_id)
        except Exception as exc:  # noqa: BLE001 - the table is the truth
            log.warning("studio: the job bell did not ring for job %d (%s)", job_id, exc)
    return _back(request, _return_to(status), f"Job {job_id} ({job.kind}) is queued again.")


@router.post("/jobs/{job_id}/cancel")
async def job_cancel(request: Request, job_id: Id, status: str = Form("")):
    job = await _job(request, job_id)
    if not await context(request).svc.jobs.cancel(job_id):
        return await _refused(request, job_id, status, "only queued or running jobs can be cancelled")
    return _back(request, _return_to(status), f"Job {job_id} ({job.kind}) cancelled.")
