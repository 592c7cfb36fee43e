"""One realistic delivery per shipped template, with the exact PassKit request it must produce.

Used twice: rendered in-process (tests/test_templates.py) and sent through the app to a
respx-mocked PassKit (tests/test_hooks_e2e.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROGRAM = {"program_id": "3iGxtXJd7x9fU2yYWcdBvQ"}
MEMBER = {**PROGRAM, "tier_id": "base", "country": "GB"}
COUPONS = {"campaign_id": "2bWzCmsbOSqOu8nLhYKQqV", "offer_id": "5Wf1W7BBdhxcL0ZJ7Tzoxo"}
TICKETS = {
    "production_id": "6aA8f7RdvnBVpmZDWAx3Xt",
    "venue_id": "0bVQz7ZqdTn1IDLtkuRAjL",
    "ticket_type_id": "4QdBzJJPgeBHP8Kf7UVcjb",
}
ANA = {
    "external_id": "CRM-123",
    "email": "Ana@Example.COM",
    "first_name": "Ana",
    "last_name": "Díaz",
    "mobile": "020 7946 0958",
    "birthday": "27/04/1990",
}
ANA_PERSON = {
    "forename": "Ana",
    "surname": "Díaz",
    "displayName": "Ana Díaz",
    "emailAddress": "Ana@example.com",
    "mobileNumber": "+442079460958",
    "dateOfBirth": {"year": 1990, "month": 4, "day": 27},
}
BY_EXTERNAL_ID = {"externalId": "CRM-123", "programId": "3iGxtXJd7x9fU2yYWcdBvQ"}
REF = {"externalMemberId": "CRM-123", "programId": "3iGxtXJd7x9fU2yYWcdBvQ"}


@dataclass(frozen=True)
class Case:
    template: str
    params: dict[str, str]
    fields: dict[str, str]
    method: str
    path: str
    json: dict[str, Any] | None
    answer: dict[str, Any] = field(default_factory=lambda: {"id": "2h8DsbNuHkxSsyGbFvQQGl"})


CASES = [
    Case(
        "member-enrol",
        MEMBER,
        {**ANA, "points": "10", "expiry": "2026-12-31", "meta_favourite_store": "Soho"},
        "POST",
        "/members/member",
        {
            "programId": "3iGxtXJd7x9fU2yYWcdBvQ",
            "tierId": "base",
            "externalId": "CRM-123",
            "person": ANA_PERSON,
            "points": 10.0,
            "expiryDate": "2026-12-31T23:59:59Z",
            "metaData": {"favourite_store": "Soho"},
        },
    ),
    Case(
        "member-upsert",
        MEMBER,
        {**ANA, "tier": "Gold"},
        "POST",
        "/members/member",
        {
            "programId": "3iGxtXJd7x9fU2yYWcdBvQ",
            "tierId": "gold",
            "externalId": "CRM-123",
            "person": ANA_PERSON,
        },
    ),
    Case(
        "member-update",
        {**PROGRAM, "country": "US"},
        {"external_id": "CRM-123", "mobile": "(415) 555-2671", "meta_vip": "yes"},
        "PUT",
        "/members/member",
        {**BY_EXTERNAL_ID, "person": {"mobileNumber": "+14155552671"}, "metaData": {"vip": "yes"}},
    ),
    Case(
        "member-delete",
        PROGRAM,
        {"external_id": "CRM-123"},
        "DELETE",
        "/members/member",
        BY_EXTERNAL_ID,
        answer={},
    ),
    Case(
        "member-lookup",
        PROGRAM,
        {"external_id": "CRM 123/7"},
        "GET",
        "/members/member/externalId/3iGxtXJd7x9fU2yYWcdBvQ/CRM%20123%2F7",
        None,
        answer={"id": "2h8DsbNuHkxSsyGbFvQQGl", "externalId": "CRM 123/7", "points": 40},
    ),
    Case(
        "member-points-earn",
        PROGRAM,
        {"external_id": "CRM-123", "points": "25", "reference": "order-991", "notes": "Online"},
        "PUT",
        "/members/member/points/earn",
        {
            **BY_EXTERNAL_ID,
            "points": 25.0,
            "eventDetails": {"externalEventId": "order-991", "notes": "Online"},
        },
        answer={"id": "2h8DsbNuHkxSsyGbFvQQGl", "points": 65},
    ),
    Case(
        "member-points-burn",
        PROGRAM,
        {"member_id": "2h8DsbNuHkxSsyGbFvQQGl", "points": "1,000"},
        "PUT",
        "/members/member/points/burn",
        {"id": "2h8DsbNuHkxSsyGbFvQQGl", "programId": "3iGxtXJd7x9fU2yYWcdBvQ", "points": 1000.0},
    ),
    Case(
        "member-points-set",
        PROGRAM,
        {"external_id": "CRM-123", "points": "0"},
        "PUT",
        "/members/member/points/set",
        {**BY_EXTERNAL_ID, "points": 0.0, "resetPoints": True},
    ),
    Case(
        "member-tier-change",
        PROGRAM,
        {"external_id": "CRM-123", "tier": "GOLD"},
        "PUT",
        "/members/member/tier",
        {**REF, "tierId": "gold"},
        answer={"id": "evt1", "member": {"id": "2h8DsbNuHkxSsyGbFvQQGl"}},
    ),
    Case(
        "member-check-in",
        PROGRAM,
        {"external_id": "CRM-123", "location": "Store 12", "device": "pos-4"},
        "POST",
        "/members/member/checkIn",
        {**REF, "address": "Store 12", "externalDeviceId": "pos-4"},
        answer={"id": "evt2", "member": {"id": "2h8DsbNuHkxSsyGbFvQQGl"}},
    ),
    Case(
        "member-check-out",
        PROGRAM,
        {"external_id": "CRM-123", "notes": "Left early"},
        "POST",
        "/members/member/checkOut",
        {**REF, "notes": "Left early"},
        answer={"id": "evt3", "member": {"id": "2h8DsbNuHkxSsyGbFvQQGl"}},
    ),
    Case(
        "coupon-issue",
        {**COUPONS, "country": "GB"},
        {
            "external_id": "WELCOME-ANA-1",
            "email": "ana@example.com",
            "first_name": "Ana",
            "sku": "SKU-1",
        },
        "POST",
        "/coupon/singleUse/coupon",
        {
            "campaignId": "2bWzCmsbOSqOu8nLhYKQqV",
            "offerId": "5Wf1W7BBdhxcL0ZJ7Tzoxo",
            "externalId": "WELCOME-ANA-1",
            "person": {"forename": "Ana", "displayName": "Ana", "emailAddress": "ana@example.com"},
            "sku": "SKU-1",
        },
    ),
    Case(
        "coupon-redeem",
        COUPONS,
        {"external_id": "WELCOME-ANA-1", "reference": "till-3", "amount": "€12,50"},
        "PUT",
        "/coupon/singleUse/coupon/redeem",
        {
            "externalId": "WELCOME-ANA-1",
            "campaignId": "2bWzCmsbOSqOu8nLhYKQqV",
            "redemptionDetails": {"redemptionReference": "till-3", "transactionAmount": 12.5},
        },
    ),
    Case(
        "coupon-void",
        COUPONS,
        {"coupon_id": "4rFdWkTVyFqkCSHG3rXvQm"},
        "DELETE",
        "/coupon/singleUse/coupon",
        {"id": "4rFdWkTVyFqkCSHG3rXvQm", "campaignId": "2bWzCmsbOSqOu8nLhYKQqV"},
        answer={},
    ),
    Case(
        "ticket-issue",
        TICKETS,
        {
            "ticket_number": "T-0001",
            "event_start": "2026-12-01 19:30",
            "email": "ana@example.com",
            "display_name": "Ana D.",
            "row": "4",
            "seat": "12",
            "price": "£45.00",
        },
        "POST",
        "/eventTickets/ticket",
        {
            "ticketTypeId": "4QdBzJJPgeBHP8Kf7UVcjb",
            "event": {
                "productionId": "6aA8f7RdvnBVpmZDWAx3Xt",
                "venueId": "0bVQz7ZqdTn1IDLtkuRAjL",
                "scheduledStartDate": "2026-12-01T19:30:00Z",
            },
            "ticketNumber": "T-0001",
            "person": {"displayName": "Ana D.", "emailAddress": "ana@example.com"},
            "seatInfo": {"row": "4", "seat": "12"},
            "faceValue": {"amount": 4500, "currency": "GBP"},  # in cents
        },
        answer={"id": "1cZ8Xm0dhd5xTqM5TZJXm4"},
    ),
    Case(
        "ticket-redeem",
        {"production_id": "6aA8f7RdvnBVpmZDWAx3Xt"},
        {"ticket_number": "T-0001", "reference": "gate 2"},
        "PUT",
        "/eventTickets/ticket/redeem",
        {
            "ticket": {
                "ticketNumber": {"productionId": "6aA8f7RdvnBVpmZDWAx3Xt", "ticketNumber": "T-0001"}
            },
            "redemptionDetails": {"redemptionReference": "gate 2"},
        },
        answer={"id": "1cZ8Xm0dhd5xTqM5TZJXm4"},
    ),
    Case(
        "pass-email",
        PROGRAM,
        {"external_id": "CRM-123", "email": "other@example.com"},
        "POST",
        "/distribution/email",
        {
            "externalId": "CRM-123",
            "classId": "3iGxtXJd7x9fU2yYWcdBvQ",
            "protocol": "MEMBERSHIP",
            "alternativeEmail": "other@example.com",
        },
        answer={},
    ),
    Case(
        "coupon-lookup",
        {"campaign_id": COUPONS["campaign_id"]},
        {"external_id": "WELCOME-ANA-1"},
        "GET",
        "/coupon/singleUse/coupon/externalId/2bWzCmsbOSqOu8nLhYKQqV/WELCOME-ANA-1",
        None,
        answer={
            "id": "2h8DsbNuHkxSsyGbFvQQGl",
            "externalId": "WELCOME-ANA-1",
            "status": "UNREDEEMED",
        },
    ),
    Case(
        "ticket-lookup",
        {"production_id": TICKETS["production_id"]},
        {"ticket_number": "T-0001"},
        "GET",
        "/eventTickets/ticket/ticketNumber?ticketNumber=T-0001&productionId=6aA8f7RdvnBVpmZDWAx3Xt",
        None,
        answer={"id": "1cZ8Xm0dhd5xTqM5TZJXm4", "ticketNumber": "T-0001", "status": "ISSUED"},
    ),
    Case(
        "member-expiry-update",
        PROGRAM,
        {"external_id": "CRM-123", "expiry": "2027-12-31"},
        "PUT",
        "/members/member/updateExpiry",
        {**BY_EXTERNAL_ID, "expiryDate": "2027-12-31T23:59:59Z"},
    ),
]
