"""Pass preview pages: what PassKit's `https://pub1.pskt.io/{passId}` page shows, roughly.

`pass_page` renders one issued pass as a wallet-style card (program, holder, points and tier;
or offer and status; or event, seat and status) with a QR-looking grid derived from the pass
id, so a demo can show "the pass" without a wallet. `index_page` lists every issued pass.
Plain HTML and inline SVG, no scripts; every value goes through `html.escape`.
"""

from __future__ import annotations

import hashlib
from html import escape

from relay.sandbox.state import Record, State

GRID = 25  # modules per side, like a version-2 QR code
FINDER = 7

_STYLE = """
body{font-family:system-ui,sans-serif;background:#eef1f5;margin:0;padding:2rem;color:#1d2430}
.card{max-width:22rem;margin:0 auto;border-radius:1rem;overflow:hidden;background:#fff;
box-shadow:0 8px 24px rgba(0,0,0,.15)}
.top{background:#1f3a5f;color:#fff;padding:1rem 1.25rem}
.top small{opacity:.75;text-transform:uppercase;letter-spacing:.08em}
.top h1{font-size:1.25rem;margin:.25rem 0 0}
dl{display:grid;grid-template-columns:1fr 1fr;gap:.75rem 1rem;padding:1rem 1.25rem;margin:0}
dt{font-size:.7rem;text-transform:uppercase;color:#6b7585}dd{margin:0;font-weight:600}
.code{text-align:center;padding:0 1.25rem 1.25rem}.code code{font-size:.75rem;color:#6b7585}
.status{display:inline-block;padding:.1rem .5rem;border-radius:.5rem;background:#e3f4e8}
.status.REDEEMED,.status.CHECKED_OUT{background:#f6e3e3}
table{border-collapse:collapse;background:#fff}td,th{padding:.4rem .8rem;text-align:left}
a,code,dd{overflow-wrap:anywhere}.code svg{max-width:100%;height:auto}
.wallet{padding:0 1.25rem 1.25rem}
.wallet button{font:inherit;padding:.4rem .8rem;margin:.2rem .4rem 0 0}
.wallet p{font-size:.85rem;color:#4a5566;margin:.3rem 0}
@media (max-width:37.5rem){body{padding:1rem .6rem}
table,tbody,tr,td{display:block}tr:first-child{display:none}
tr{border:1px solid #d5dbe3;border-radius:.4rem;margin:0 0 .5rem}td{padding:.2rem .6rem}}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _bits(pass_id: str, count: int) -> list[bool]:
    out: list[bool] = []
    block = 0
    while len(out) < count:
        digest = hashlib.sha256(f"{pass_id}:{block}".encode()).digest()
        out.extend(bool(byte >> shift & 1) for byte in digest for shift in range(8))
        block += 1
    return out[:count]


def _finder(row: int, col: int) -> bool | None:
    """The three corner squares that make a grid read as a QR code; None outside them."""
    for top, left in ((0, 0), (0, GRID - FINDER), (GRID - FINDER, 0)):
        r, c = row - top, col - left
        if 0 <= r < FINDER and 0 <= c < FINDER:
            ring = min(r, c, FINDER - 1 - r, FINDER - 1 - c)
            return ring != 1
        if -1 <= r <= FINDER and -1 <= c <= FINDER:
            return False  # the quiet separator around a finder
    return None


def barcode_svg(pass_id: str, size: int = 200) -> str:
    """A QR-looking grid of squares derived from the id: the same id, the same picture."""
    bits = _bits(pass_id, GRID * GRID)
    cell = size / (GRID + 2)
    rects = []
    for row in range(GRID):
        for col in range(GRID):
            finder = _finder(row, col)
            dark = bits[row * GRID + col] if finder is None else finder
            if dark:
                rects.append(
                    f'<rect x="{(col + 1) * cell:.2f}" y="{(row + 1) * cell:.2f}" '
                    f'width="{cell:.2f}" height="{cell:.2f}"/>'
                )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" aria-label="barcode for {escape(pass_id)}">'
        f'<rect width="{size}" height="{size}" fill="#fff"/><g fill="#111">{"".join(rects)}</g>'
        "</svg>"
    )


def holder(record: Record) -> str:
    person = record.get("person") or {}
    name = person.get("displayName") or " ".join(
        part for part in (person.get("forename"), person.get("surname")) if part
    )
    return str(name or "—")


def _number(value: float) -> str:
    return f"{value:g}"


def _facts(state: State, pass_id: str) -> tuple[str, str, list[tuple[str, str]]] | None:
    """(kind, title, [(label, value)…]) of a pass, or None if no such pass exists."""
    if pass_id in state.members:
        member = state.members[pass_id]
        program = state.programs.get(member["programId"], {})
        tier = state.tiers.get((member["programId"], member["tierId"]), {})
        return (
            "Membership",
            program.get("name", "Membership"),
            [
                ("Member", holder(member)),
                ("Tier", tier.get("name", member["tierId"])),
                ("Points", _number(member.get("points", 0))),
                ("Status", member.get("status", "")),
                ("Member no.", member.get("externalId", "")),
            ],
        )
    if pass_id in state.coupons:
        coupon = state.coupons[pass_id]
        campaign = state.campaigns.get(coupon["campaignId"], {})
        offer = state.offers.get(coupon["offerId"], {})
        return (
            "Coupon",
            campaign.get("name", "Coupon"),
            [
                ("Holder", holder(coupon)),
                ("Offer", offer.get("offerTitle", "")),
                ("Status", coupon["status"]),
                ("Code", coupon.get("externalId", "")),
            ],
        )
    if pass_id in state.tickets:
        ticket = state.tickets[pass_id]
        event = state.events[ticket["eventId"]]
        seat = ticket.get("seatInfo") or {}
        seat_text = " ".join(f"{k} {seat[k]}" for k in ("section", "row", "seat") if seat.get(k))
        return (
            "Event ticket",
            state.productions[event["productionId"]].get("name", "Event"),
            [
                ("Holder", holder(ticket)),
                ("Venue", state.venues[event["venueId"]].get("name", "")),
                ("Starts", event["scheduledStartDate"]),
                ("Seat", seat_text or "General admission"),
                ("Ticket", ticket.get("ticketNumber", "")),
                ("Status", ticket["status"]),
            ],
        )
    return None


def pass_page(state: State, pass_id: str, *, footer: str = "") -> str | None:
    """The card for one pass, or None when there is no such pass (deleted, voided, unknown);
    `footer` is HTML added under the code (the wallet buttons, when events are sent)."""
    facts = _facts(state, pass_id)
    if facts is None:
        return None
    kind, title, rows = facts
    items = "".join(
        f"<dt>{escape(label)}</dt><dd"
        + (f' class="status {escape(value)}"' if label == "Status" else "")
        + f">{escape(value or '—')}</dd>"
        for label, value in rows
    )
    body = (
        f'<div class="card"><div class="top"><small>{escape(kind)}</small>'
        f"<h1>{escape(title)}</h1></div><dl>{items}</dl>"
        f'<div class="code">{barcode_svg(pass_id)}<br><code>{escape(pass_id)}</code></div>'
        f"{footer}</div>"
    )
    return _page(f"{title} — {rows[0][1]}", body)  # the first row is always the holder


def not_found_page(pass_id: str) -> str:
    body = (
        '<div class="card"><div class="top"><small>PassKit sandbox</small>'
        "<h1>No such pass</h1></div><dl><dt>Pass id</dt>"
        f"<dd>{escape(pass_id)}</dd></dl><p style='padding:0 1.25rem 1.25rem'>It was never "
        "issued, or it has been deleted or voided since. "
        '<a href="../">All passes</a></p></div>'
    )
    return _page("Pass not found", body)


def index_page(state: State) -> str:
    rows = []
    for kind, table in (
        ("Member", state.members),
        ("Coupon", state.coupons),
        ("Ticket", state.tickets),
    ):
        for pass_id, record in table.items():
            rows.append(
                f'<tr><td>{kind}</td><td><a href="pass/{escape(pass_id)}">{escape(pass_id)}</a>'
                f"</td><td>{escape(holder(record))}</td><td>{escape(record.get('status', ''))}"
                "</td></tr>"
            )
    table_html = (
        "<table><tr><th>Kind</th><th>Pass</th><th>Holder</th><th>Status</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No passes issued yet.</p>"
    )
    body = (
        "<h1>PassKit sandbox</h1><p>Issued passes (in memory; "
        '<a href="_sandbox/state">state as JSON</a>).</p>' + table_html
    )
    return _page("PassKit sandbox", body)
