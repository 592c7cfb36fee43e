"""The console's Import page (`/admin/import`): upload a CSV of members, match its columns to
the hook's fields (relay.imports.columns), see every problem of the bad rows by their line, then
import the rest with a live progress bar, and download the rows that failed. The work is
`relay import`'s (relay.imports.importer), run in this server process.

An import's files (the upload, its state, the failed rows, the rows done) live sealed in the
relay's own database (relay.imports.stored), so every process of this relay can show its
progress and carry on a run whose process died, and no other relay (even on the same machine)
can list or read them. They hold members' names and emails: deleted a day after they last
changed (`KEEP`, long enough to download the failed rows), or by `relay erase`."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from relay.access.tokens import Hook
from relay.admin.session import Session, csrf_ok
from relay.imports.columns import columns_of, guess, importable
from relay.imports.csvfile import CsvProblem, ImportRunning, MemberFile, NotUtf8
from relay.imports.importer import Importer, ImportRefused, Tally, import_rows, resolve_hook
from relay.imports.stored import StoredFailedRows, StoredLedger, store_upload, working_copy
from relay.store.imports import KEEP
from relay.ui.html import form_text, page

if TYPE_CHECKING:
    from relay.admin.context import ConsoleContext

UPLOAD_LIMIT = 20 * 1024 * 1024  # 50,000 members at 400 bytes a row, with room to spare
SHOWN_PROBLEMS = 100  # bad rows listed on the page; all of them are in the failed-rows CSV
WRITE_EVERY = 0.25  # seconds between saves of a running job's state
_JOB_ID = re.compile(r"[0-9a-f]{16}")
BEAT = 2.0  # seconds between a running job's heartbeats


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
            Route(r, self.upload(), methods=["GET", "POST"]),
            Route(f"{r}/{{job}}", guarded(self.job_page), methods=["GET"]),
            Route(f"{r}/{{job}}/progress", guarded(self.progress), methods=["GET"]),
            Route(f"{r}/{{job}}/run", guarded(self.run), methods=["POST"]),
            Route(f"{r}/{{job}}/encoding", guarded(self.confirm_encoding), methods=["POST"]),
            Route(f"{r}/{{job}}/columns", guarded(self.match_columns), methods=["POST"]),
            Route(f"{r}/{{job}}/failed.csv", guarded(self.failed_rows), methods=["GET"]),
        ]

    def upload(self) -> Callable[[Request], Awaitable[Response]]:
        """The upload's door: the session is checked before a byte of the body is read (a
        stranger's 20 MB is never taken in), then the form is parsed as it streams, the file
        spooled to disk by Starlette past 1 MB, and refused the moment it passes UPLOAD_LIMIT;
        only then the form's CSRF token is checked, as `guarded` does."""
        guarded = self.console.guarded(self.start)

        async def endpoint(request: Request) -> Response:
            if request.method != "POST":
                return await guarded(request)
            session = await self.console.session(request)
            if session is None:
                return self.console.refused("Your session has ended: sign in again.")
            try:
                form = await read_upload(request, UPLOAD_LIMIT)
            except UploadTooLarge:
                why = f"The file is larger than {UPLOAD_LIMIT // 1024 // 1024} MB: split it in two."
                return page("message.html", 413, title="File too large", heading="File too large",
                            message=why, link=f"{self.root}/import", root=self.root)  # fmt: skip
            except (MultiPartException, ClientDisconnect):
                return page("message.html", 400, title="Upload broken", heading="Upload broken",
                            message="The upload did not arrive whole: choose the file again.",
                            link=f"{self.root}/import", root=self.root)  # fmt: skip
            try:
                if not csrf_ok(session, form_text(form, "csrf")):
                    return self.console.refused("The form's security token is missing or wrong.")
                return await self.start(request, session, form)
            finally:
                await form.close()  # the uploaded file's spooled copy

        return endpoint

    # -- pages -------------------------------------------------------------------------------

    async def start(
        self, request: Request, session: Session, form: FormData | None = None, problem: str = ""
    ) -> Response:
        store = await self.console.store()
        await store.purge_imports(time.time() - KEEP)
        # The hooks a row can go through (a template's, not Stripe's or PassKit events'), each
        # with what it does in words, as the mint form names it.
        library = self.console.s.library
        hooks = [(h, template.title) for h in await store.list_hooks(include_revoked=False)
                 if (template := library.get(h.template)) is not None]  # fmt: skip
        if form is not None and not problem:
            upload, hook_id = form.get("file"), str(form.get("hook") or "")
            if not isinstance(upload, UploadFile) or not upload.filename:
                return await self.start(request, session, form, "Choose the CSV file to upload.")
            try:
                return await self.create(hook_id, upload)
            except (ImportRefused, CsvProblem) as exc:
                return await self.start(request, session, form, _sentence(str(exc)))
        return self.console.render("imports.html", session, "import", title="Import members",
                                   hooks=hooks, problem=problem,
                                   jobs=await store.recent_imports(),
                                   limit_mb=UPLOAD_LIMIT // 1024 // 1024)  # fmt: skip

    async def create(self, hook_id: str, upload: UploadFile) -> Response:
        hook = await resolve_hook(self.endpoints, hook_id)
        store = await self.console.store()
        record = await store.get_hook(hook.id)
        job_id = secrets.token_hex(8)
        job: dict[str, Any] = {
            "id": job_id, "hook": hook.id, "label": record.label if record else hook.id,
            "name": Path(upload.filename or "members.csv").name, "phase": "checking",
            "created": time.time(), "total": 0, "bad": [], "bad_count": 0,
        }  # fmt: skip
        await store.save_import(job, time.time())
        try:
            await store_upload(store, job_id, upload)
            async with working_copy(store, job_id, job["name"]) as file:
                self.to_matching(job, hook, file)  # an empty or unreadable file is refused here
        except NotUtf8 as exc:
            if not exc.preview:  # not text in any encoding the relay reads
                await store.delete_import(job_id)
                raise CsvProblem(f"{exc}: it cannot be read as text") from None
            # Shown its first rows as Windows-1252, the operator says whether they read right.
            job.update(phase="encoding", error=_sentence(str(exc)), preview=exc.preview)
            await self.save(job)
            return RedirectResponse(f"{self.root}/import/{job_id}", 303)
        except CsvProblem:
            await store.delete_import(job_id)
            raise
        await self.save(job)
        return RedirectResponse(f"{self.root}/import/{job_id}", 303)

    def to_matching(self, job: dict[str, Any], hook: Hook, file: MemberFile) -> None:
        """The matching step: each field of the hook's template with the column that best
        matches it preselected (relay.imports.columns), a few values of each column shown."""
        fields = importable(self.console.s.relay.template_for(hook).fields)
        columns = columns_of(file.header, file.sample())
        guessed = guess(fields, columns)
        job.update(phase="matching", columns=[
            {"header": c.header, "samples": list(dict.fromkeys(c.samples))[:3]} for c in columns
        ], fields=[
            {"name": spec.name, "required": spec.required, "help": spec.help,
             "title": spec.name.replace("_", " ").capitalize(),
             "column": file.header[i] if (i := guessed[spec.name]) is not None else ""}
            for spec in fields
        ])  # fmt: skip

    async def match_columns(self, request: Request, session: Session) -> Response:
        """The operator's matching: every required field needs a column, a column fills one
        field at most; then the rows are checked with it."""
        job = await self.load(request.path_params["job"])
        if job is None:
            return self.console.refused("There is no such import.")
        if job["phase"] != "matching":
            return RedirectResponse(f"{self.root}/import/{job['id']}", 303)
        form = await request.form()
        headers = [column["header"] for column in job["columns"]]
        chosen = {f["name"]: str(form.get(f"column:{f['name']}") or "") for f in job["fields"]}
        problems: dict[str, str] = {}
        for f in job["fields"]:
            column = chosen[f["name"]]
            f["column"] = column if column in headers else ""
            if column and column not in headers:
                problems[f["name"]] = "That column is not in the file."
            elif not column and f["required"]:
                problems[f["name"]] = "Every row needs this: choose the column that has it."
        used = [c for c in chosen.values() if c]
        for f in job["fields"]:
            if chosen[f["name"]] and used.count(chosen[f["name"]]) > 1:
                problems[f["name"]] = "This column is chosen for another field too."
        if problems:
            return self.console.render("import_job.html", session, "import", title="Import",
                                       job=job, state=await self.state(job), problems=problems,
                                       status=422)  # fmt: skip
        try:
            hook = await resolve_hook(self.endpoints, job["hook"])
        except ImportRefused as exc:
            return self.console.refused(_sentence(str(exc)))
        job.update(phase="checking", mapping={k: v for k, v in chosen.items() if v})
        await self.save(job)
        self.spawn(job["id"], self.check(job, hook))
        return RedirectResponse(f"{self.root}/import/{job['id']}", 303)

    async def confirm_encoding(self, request: Request, session: Session) -> Response:
        """The operator read the first rows as Windows-1252 and says they read right."""
        job = await self.load(request.path_params["job"])
        if job is None:
            return self.console.refused("There is no such import.")
        if job["phase"] == "encoding":
            try:
                hook = await resolve_hook(self.endpoints, job["hook"])
            except ImportRefused as exc:
                return self.console.refused(_sentence(str(exc)))
            job.update(encoding="cp1252", error="", preview=[])
            store = await self.console.store()
            try:
                async with working_copy(store, job["id"], job["name"], "cp1252") as file:
                    self.to_matching(job, hook, file)
            except CsvProblem as exc:
                job.update(phase="unreadable", error=_sentence(str(exc)))
            await self.save(job)
        return RedirectResponse(f"{self.root}/import/{job['id']}", 303)

    async def job_page(self, request: Request, session: Session) -> Response:
        job = await self.load(request.path_params["job"])
        if job is None:
            return self.console.refused("There is no such import (they are kept for a day).")
        state = await self.state(job)
        return self.console.render("import_job.html", session, "import", title="Import",
                                   job=job, state=state)  # fmt: skip

    async def progress(self, request: Request, session: Session) -> Response:
        job = await self.load(request.path_params["job"])
        if job is None:
            return JSONResponse({"phase": "gone"}, status_code=404)
        return JSONResponse(await self.state(job), headers={"Cache-Control": "no-store"})

    async def run(self, request: Request, session: Session) -> Response:
        job = await self.load(request.path_params["job"])
        if job is None:
            return self.console.refused("There is no such import.")
        state = await self.state(job)
        if state["phase"] in ("checked", "stopped"):
            resume = state["phase"] == "stopped"
            try:
                hook = await resolve_hook(self.endpoints, job["hook"])
            except ImportRefused as exc:
                return self.console.refused(_sentence(str(exc)))
            job.update(phase="running", started=time.time(), error="")
            await self.save(job)
            self.spawn(job["id"], self.send(job, hook, resume=resume))
        return RedirectResponse(f"{self.root}/import/{job['id']}", 303)

    async def failed_rows(self, request: Request, session: Session) -> Response:
        job = await self.load(request.path_params["job"])
        store = await self.console.store()
        if job is None or not await store.has_import_part(job["id"], "failed"):
            return self.console.refused("This import has no failed rows to download.")
        name = re.sub(r"[^\w.-]", "_", Path(job["name"]).stem) + "-failed.csv"
        return StreamingResponse(store.import_parts(job["id"], "failed"), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"',
                                          "Cache-Control": "no-store"})  # fmt: skip

    # -- the work, in this process -----------------------------------------------------------

    def spawn(self, job_id: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        self.here.add(job_id)

        def done(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.here.discard(job_id)

        task.add_done_callback(done)

    async def check(self, job: dict[str, Any], hook: Hook) -> None:
        store = await self.console.store()
        try:
            async with working_copy(
                store, job["id"], job["name"], job.get("encoding", ""), job.get("mapping")
            ) as file:
                importer = Importer(self.endpoints, hook, file)
                async for row, problems in importer.check():
                    job["bad_count"] += 1
                    if len(job["bad"]) < SHOWN_PROBLEMS:
                        job["bad"].append([row.line, problems])
                job.update(phase="checked", total=file.count())
        except CsvProblem as exc:
            job.update(phase="unreadable", error=_sentence(str(exc)))
        await self.save(job)

    async def send(self, job: dict[str, Any], hook: Hook, *, resume: bool) -> None:
        store = await self.console.store()
        saved = 0.0
        pending: set[asyncio.Task[None]] = set()

        def save_soon() -> None:  # the callbacks are not async: the save runs beside the work
            task = asyncio.ensure_future(self.save(job))
            pending.add(task)
            task.add_done_callback(pending.discard)

        def started(tally: Tally) -> None:
            job.update(tally.as_dict(), done_at_start=tally.done)
            save_soon()

        def advanced(tally: Tally) -> None:
            nonlocal saved
            job.update(tally.as_dict())
            if time.monotonic() - saved >= WRITE_EVERY:
                saved = time.monotonic()
                save_soon()

        beat = asyncio.ensure_future(self.heartbeat(job["id"]))
        try:
            async with working_copy(
                store, job["id"], job["name"], job.get("encoding", ""), job.get("mapping")
            ) as file:
                importer = Importer(self.endpoints, hook, file)
                failed = StoredFailedRows(store, job["id"], file.header)
                stamp = {"hook": hook.id, "job": job["id"]}  # and the mapping (import_rows)
                tally = await import_rows(
                    importer, failed_to=lambda append: failed.start(append=append),
                    resume=resume, on_start=started, on_row=advanced,
                    ledger=StoredLedger(store, job), stamp=stamp,
                )  # fmt: skip
            job.update(tally.as_dict(), phase="finished", finished=time.time())
        except (ImportRefused, ImportRunning, CsvProblem) as exc:
            job.update(phase="stopped", error=_sentence(str(exc)))
        finally:
            beat.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self.save(job)

    async def heartbeat(self, job_id: str) -> None:
        """While this process runs the job, its row says so every BEAT seconds."""
        store = await self.console.store()
        while True:
            await asyncio.sleep(BEAT)
            with contextlib.suppress(Exception):  # a missed beat only risks a "stopped" shown
                await store.touch_import(job_id, time.time())

    async def state(self, job: dict[str, Any]) -> dict[str, Any]:
        """What the page and its progress poll show: counts, rate and time left in words."""
        phase = job["phase"]
        if phase == "running" and job["id"] not in self.here and not await self.held(job):
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

    async def held(self, job: dict[str, Any]) -> bool:
        """Another process runs the job while its heartbeat is fresh."""
        changed = await (await self.console.store()).import_changed_at(job["id"])
        return changed is not None and changed > time.time() - 3 * BEAT

    async def load(self, job_id: str) -> dict[str, Any] | None:
        if not _JOB_ID.fullmatch(job_id):
            return None
        return await (await self.console.store()).get_import(job_id)

    async def save(self, job: dict[str, Any]) -> None:
        await (await self.console.store()).save_import(dict(job), time.time())


class UploadTooLarge(Exception):
    """The upload passed its cap while it was being read."""


async def read_upload(request: Request, limit: int) -> FormData:
    """The multipart form, parsed as the body streams in: UploadTooLarge as soon as more than
    `limit` bytes arrived (or were announced), so at most one read chunk is ever held besides
    Starlette's 1 MB spool per file; a single file and a few small fields only."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise UploadTooLarge
        return message

    return await Request(request.scope, capped).form(
        max_files=1, max_fields=8, max_part_size=64 * 1024
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "some time"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
