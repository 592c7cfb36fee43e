"""The console's Import page (`/admin/import`): upload a CSV of members, see the rows with a
problem by their line, then import the rest with a live progress bar, and download the rows
that failed. The work is `relay import`'s (relay.imports.importer), run in this server process.

An import's files live in a folder of its own under the system's temporary folder (the upload,
`job.json` with its state, the failed rows, the progress file), so any relay process on the
machine can show its progress, and a run whose process died can be carried on (resumed). They
hold members' names and emails, so the folders are private to the relay's user and are deleted
a day after they last changed (`KEEP`): long enough to download the failed rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from relay.admin.session import Session
from relay.errors import RelayError
from relay.imports.csvfile import CsvProblem, ImportRunning, MemberFile, Progress
from relay.imports.importer import Importer, ImportRefused, Tally, import_rows, resolve_hook
from relay.ui.html import page
from relay.web.endpoints import read_body

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

UPLOAD_LIMIT = 20 * 1024 * 1024  # 50,000 members at 400 bytes a row, with room to spare
UPLOAD_FORM = UPLOAD_LIMIT + 64 * 1024  # the file and the form around it
SHOWN_PROBLEMS = 100  # bad rows listed on the page; all of them are in the failed-rows CSV
WRITE_EVERY = 0.25  # seconds between saves of a running job's state
JOBS = Path(tempfile.gettempdir()) / "relay-imports"
_JOB_ID = re.compile(r"[0-9a-f]{16}")
KEEP = 86_400.0  # seconds an import's files outlive their last change


class ImportPage:
    def __init__(self, console: ConsoleContext) -> None:
        self.console = console
        self.endpoints = console.endpoints
        self.root = console.root
        self.tasks: set[asyncio.Task[None]] = set()  # strong references to the work
        self.here: set[str] = set()  # jobs this process is working on

    def routes(self) -> list[BaseRoute]:
        r, guarded = f"{self.console.root}/import", self.console.guarded
        return [
            Route(
                r,
                self.bounded(guarded(self.start, form_limit=UPLOAD_FORM, files=1)),
                methods=["GET", "POST"],
            ),
            Route(f"{r}/{{job}}", guarded(self.job_page), methods=["GET"]),
            Route(f"{r}/{{job}}/progress", guarded(self.progress), methods=["GET"]),
            Route(f"{r}/{{job}}/run", guarded(self.run), methods=["POST"]),
            Route(f"{r}/{{job}}/failed.csv", guarded(self.failed_rows), methods=["GET"]),
        ]

    def bounded(self, handler: Callable[[Request], Awaitable[Response]]) -> Any:
        """The upload read whole, at most UPLOAD_LIMIT bytes, before the form is parsed."""

        async def endpoint(request: Request) -> Response:
            if request.method != "POST":
                return await handler(request)
            try:
                body = await read_body(request, UPLOAD_FORM)
            except RelayError:
                why = f"The file is larger than {UPLOAD_LIMIT // 1024 // 1024} MB: split it in two."
                return page("message.html", 413, title="File too large", heading="File too large",
                            message=why, link=f"{self.root}/import", root=self.root)  # fmt: skip
            sent = False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            inner = Request(request.scope, replay)
            try:
                return await handler(inner)
            finally:
                await inner.close()  # the uploaded file's spooled copy

        return endpoint

    # -- pages -------------------------------------------------------------------------------

    async def start(self, request: Request, session: Session, problem: str = "") -> Response:
        sweep(time.time())
        store = await self.console.store()
        # The hooks a row can go through (a template's, not Stripe's or PassKit events'), each
        # with what it does in words, as the mint form names it.
        library = self.console.s.library
        hooks = [(h, template.title) for h in await store.list_hooks(include_revoked=False)
                 if (template := library.get(h.template)) is not None]  # fmt: skip
        if request.method == "POST" and not problem:
            form = await request.form()
            upload, hook_id = form.get("file"), str(form.get("hook") or "")
            if not isinstance(upload, UploadFile) or not upload.filename:
                return await self.start(request, session, "Choose the CSV file to upload.")
            try:
                return await self.create(hook_id, upload)
            except (ImportRefused, CsvProblem) as exc:
                return await self.start(request, session, _sentence(str(exc)))
        return self.console.render("imports.html", session, "import", title="Import members",
                                   hooks=hooks, problem=problem, jobs=recent_jobs(),
                                   limit_mb=UPLOAD_LIMIT // 1024 // 1024)  # fmt: skip

    async def create(self, hook_id: str, upload: UploadFile) -> Response:
        hook = await resolve_hook(self.endpoints, hook_id)
        record = await (await self.console.store()).get_hook(hook.id)
        job_id = secrets.token_hex(8)
        folder = JOBS / job_id
        JOBS.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700)
        with (folder / "upload.csv").open("wb") as out:
            while chunk := await upload.read(64 * 1024):
                out.write(chunk)
        file = MemberFile(folder / "upload.csv")
        job = {"id": job_id, "hook": hook.id, "label": record.label if record else hook.id,
               "name": Path(upload.filename or "members.csv").name, "phase": "checking",
               "created": time.time(), "total": 0, "bad": [], "bad_count": 0}  # fmt: skip
        save(job)
        self.spawn(job_id, self.check(job, Importer(self.endpoints, hook, file)))
        return RedirectResponse(f"{self.root}/import/{job_id}", 303)

    async def job_page(self, request: Request, session: Session) -> Response:
        job = load(request.path_params["job"])
        if job is None:
            return self.console.refused("There is no such import (they are kept until restart).")
        state = self.state(job)
        return self.console.render("import_job.html", session, "import", title="Import",
                                   job=job, state=state)  # fmt: skip

    async def progress(self, request: Request, session: Session) -> Response:
        job = load(request.path_params["job"])
        if job is None:
            return JSONResponse({"phase": "gone"}, status_code=404)
        return JSONResponse(self.state(job), headers={"Cache-Control": "no-store"})

    async def run(self, request: Request, session: Session) -> Response:
        job = load(request.path_params["job"])
        if job is None:
            return self.console.refused("There is no such import.")
        state = self.state(job)
        if state["phase"] in ("checked", "stopped"):
            resume = state["phase"] == "stopped"
            try:
                hook = await resolve_hook(self.endpoints, job["hook"])
            except ImportRefused as exc:
                return self.console.refused(_sentence(str(exc)))
            job.update(phase="running", started=time.time(), error="")
            save(job)
            file = MemberFile(JOBS / job["id"] / "upload.csv")
            importer = Importer(self.endpoints, hook, file)
            self.spawn(job["id"], self.send(job, importer, resume=resume))
        return RedirectResponse(f"{self.root}/import/{job['id']}", 303)

    async def failed_rows(self, request: Request, session: Session) -> Response:
        job = load(request.path_params["job"])
        path = JOBS / job["id"] / "failed.csv" if job else None
        if job is None or path is None or not path.exists():
            return self.console.refused("This import has no failed rows to download.")
        name = re.sub(r"[^\w.-]", "_", Path(job["name"]).stem) + "-failed.csv"
        return FileResponse(path, media_type="text/csv", filename=name)

    # -- the work, in this process -----------------------------------------------------------

    def spawn(self, job_id: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        self.here.add(job_id)

        def done(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.here.discard(job_id)

        task.add_done_callback(done)

    async def check(self, job: dict[str, Any], importer: Importer) -> None:
        try:
            async for row, reason in importer.check():
                job["bad_count"] += 1
                if len(job["bad"]) < SHOWN_PROBLEMS:
                    job["bad"].append([row.line, reason])
            job.update(phase="checked", total=importer.file.count())
        except CsvProblem as exc:
            job.update(phase="unreadable", error=_sentence(str(exc)))
        save(job)

    async def send(self, job: dict[str, Any], importer: Importer, *, resume: bool) -> None:
        saved = 0.0

        def started(tally: Tally) -> None:
            job.update(tally.as_dict(), done_at_start=tally.done)
            save(job)

        def advanced(tally: Tally) -> None:
            nonlocal saved
            job.update(tally.as_dict())
            if time.monotonic() - saved >= WRITE_EVERY:
                saved = time.monotonic()
                save(job)

        try:
            tally = await import_rows(importer, failed_to=JOBS / job["id"] / "failed.csv",
                                      resume=resume, on_start=started, on_row=advanced)  # fmt: skip
            job.update(tally.as_dict(), phase="finished", finished=time.time())
        except (ImportRefused, ImportRunning, CsvProblem) as exc:
            job.update(phase="stopped", error=_sentence(str(exc)))
        save(job)

    def state(self, job: dict[str, Any]) -> dict[str, Any]:
        """What the page and its progress poll show: counts, rate and time left in words."""
        phase = job["phase"]
        if phase == "running" and job["id"] not in self.here and not self.held(job):
            phase = "stopped"  # the process running it is gone: it can be carried on
        total, done = job.get("total", 0), job.get("done", 0)
        elapsed = time.time() - job.get("started", time.time())
        rate = (done - job.get("done_at_start", 0)) / elapsed if elapsed > 0.5 else 0.0
        left = (total - done) / rate if rate > 0 else None
        words = f"{done:,} of {total:,} rows done"
        if phase == "running" and rate:
            words += f" · {rate:,.0f} rows a second · {_duration(left)} left"
        return {"phase": phase, "total": total, "done": done, "failed": job.get("failed", 0),
                "imported": job.get("imported", 0), "already": job.get("already", 0),
                "words": words}  # fmt: skip

    def held(self, job: dict[str, Any]) -> bool:
        return Progress(JOBS / job["id"] / "upload.csv").held_elsewhere()


def save(job: dict[str, Any]) -> None:
    """Written whole, then renamed: a reader never sees half a file."""
    folder = JOBS / job["id"]
    temporary = folder / f"job.json.{os.getpid()}"
    temporary.write_text(json.dumps(job), encoding="utf-8")
    os.replace(temporary, folder / "job.json")


def load(job_id: str) -> dict[str, Any] | None:
    if not _JOB_ID.fullmatch(job_id):
        return None
    with contextlib.suppress(FileNotFoundError, ValueError):
        job: dict[str, Any] = json.loads((JOBS / job_id / "job.json").read_text(encoding="utf-8"))
        return job
    return None


def sweep(now: float) -> None:
    """Delete the imports nobody has touched for KEEP seconds (a running one saves its state
    every moment, so it is never among them)."""
    for folder in JOBS.glob("*"):
        if not _JOB_ID.fullmatch(folder.name):
            continue
        with contextlib.suppress(OSError):  # another process may be sweeping it right now
            changed = max((f.stat().st_mtime for f in folder.iterdir()), default=0.0)
            if changed < now - KEEP:
                shutil.rmtree(folder, ignore_errors=True)


def recent_jobs(count: int = 10) -> list[dict[str, Any]]:
    found = [job for folder in JOBS.glob("*") if (job := load(folder.name)) is not None]
    return sorted(found, key=lambda job: job["created"], reverse=True)[:count]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "some time"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
