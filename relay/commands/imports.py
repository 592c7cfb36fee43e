"""`relay import FILE.csv --hook HOOK`: the terminal's side of an import (relay.imports.importer
does the work): the dry run's bad rows by line, a progress bar (tqdm) for the real run, one summary
line. Exit 0 only when every row is fine (dry run) or succeeded (real run)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from relay.access.tokens import Hook
from relay.delivery.services import Services, build_services
from relay.forms.payloads import normalise_key
from relay.imports.columns import MappingProblem, importable, parse_map
from relay.imports.csvfile import CsvProblem, ImportRunning, MemberFile, NotUtf8
from relay.imports.importer import Importer, ImportRefused, Tally, import_rows, resolve_hook
from relay.settings import Settings
from relay.web.endpoints import Endpoints


def _say(line: str) -> None:
    print(line, file=sys.stderr)


async def import_csv(
    settings: Settings, path: Path, hook_given: str, *, dry_run: bool, failed_to: Path | None,
    resume: bool, encoding: str = "", columns: Sequence[str] = (),
) -> int:  # fmt: skip
    services = build_services(settings)
    try:
        try:
            file = MemberFile(path, encoding=encoding)
            endpoints = Endpoints(services)
            hook = await resolve_hook(endpoints, hook_given)
            if columns:
                file = MemberFile(path, encoding=encoding,
                                  mapping=_mapping(file, columns, services, hook))  # fmt: skip
            importer = Importer(endpoints, hook, file)
            if dry_run:
                return await _dry_run(importer)
            return await _real_run(importer, failed_to, resume=resume)
        except MappingProblem as exc:
            _say(f"relay: {exc}")
            return 2
        except NotUtf8 as exc:
            _not_utf8(exc)
            return 1
        except (ImportRefused, ImportRunning, CsvProblem) as exc:
            _say(f"relay: {exc}")
            return 1
        except OSError as exc:  # not there, a folder, not readable
            _say(f"relay: cannot read {path}: {exc.strerror or exc}")
            return 1
    finally:
        await services.aclose()


def _mapping(
    file: MemberFile, given: Sequence[str], services: Services, hook: Hook
) -> dict[str, str]:
    """--map's columns, plus each column named exactly as a field the map left out."""
    fields = importable(services.relay.template_for(hook).fields)
    names = [spec.name for spec in fields]
    mapping = parse_map(given, file.header, names)
    used = set(mapping.values())
    for column in file.header:
        name = normalise_key(column)
        if name in names and name not in mapping and column not in used:
            mapping[name] = column
    return mapping


def _not_utf8(exc: NotUtf8) -> None:
    if not exc.preview:
        _say(f"relay: {exc} (it cannot be read as Windows-1252 either).")
        return
    _say(f"relay: {exc}. Read as Windows-1252 (Excel's CSV on Windows), its first rows are:")
    for row in exc.preview:
        _say("  " + " | ".join(row))
    _say("If they read right, run the same command again with --encoding cp1252.")


async def _dry_run(importer: Importer) -> int:
    bad = 0
    async for row, problems in importer.check():
        bad += 1
        for problem in problems:
            print(f"line {row.line}: {problem}")
    total = importer.file.count()
    if bad:
        _say(f"{bad:,} of {total:,} rows have a problem (listed above by their line in the file); "
             "nothing was sent. Fix them and run the dry run again.")  # fmt: skip
        return 1
    _say(f"all {total:,} rows are ready to import; nothing was sent.")
    return 0


async def _real_run(importer: Importer, failed_to: Path | None, *, resume: bool) -> int:
    bar: tqdm[NoReturn] | None = None

    def start(tally: Tally) -> None:
        nonlocal bar
        # disable=None: a bar on a terminal, nothing in a log file
        bar = tqdm(total=tally.total, initial=tally.done, unit="row", file=sys.stderr,
                   disable=None, dynamic_ncols=True)  # fmt: skip

    def advance(tally: Tally) -> None:
        if bar is not None:
            bar.set_postfix(failed=tally.failed, refresh=False)
            bar.update(1)

    try:
        tally = await import_rows(importer, failed_to=failed_to, resume=resume, on_start=start,
                                  on_row=advance)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    before = f"; {tally.already:,} were already imported" if tally.already else ""
    print(f"{tally.succeeded:,} of {tally.total:,} rows succeeded: {tally.imported:,} sent to "
          f"PassKit{before}")  # fmt: skip
    if tally.failed:
        where = (
            f": they are in {failed_to} with the reason"
            if failed_to
            else (" (add --failed-to FILE to get them as a CSV to fix and import again)")
        )
        print(f"{tally.failed:,} rows failed{where}")
        return 1
    return 0
