"""Users as Supabase Auth shows them, and the checks on what a request may set.

Pure functions: no I/O. ``user_json`` is the shape supabase-py's ``User``
model parses (required: id, aud, app_metadata, user_metadata, created_at).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from ledgerbase.auth.errors import validation_failed
from ledgerbase.auth.store import UserRecord

# GoTrue's address check (HTML5's), plus its length limit
_EMAIL = re.compile(r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*")
_IDENTITY_NAMESPACE = uuid.UUID("6f1ac64c-1d5e-4f0e-9d6b-6c6564676572")
EMAIL_APP_METADATA: dict[str, Any] = {"provider": "email", "providers": ["email"]}


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 with the zone, as GoTrue writes timestamps (``Z`` for UTC)."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def normalize_email(value: Any) -> str:
    """The lower-cased address; raises validation_failed (400) when it is not one."""
    if not isinstance(value, str) or not value.strip():
        raise validation_failed("An email address is required")
    email = value.strip().lower()
    if len(email) > 255 or _EMAIL.fullmatch(email) is None:
        raise validation_failed("Unable to validate email address: invalid format")
    return email


def metadata(value: Any, field: str) -> dict[str, Any]:
    """A metadata object from a request (None is {}); raises validation_failed otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise validation_failed(f"{field} must be a JSON object")
    return value


def merge_metadata(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """GoTrue's merge: each key of ``changes`` is set, or removed when its value is null."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def identity_id(user_id: str) -> str:
    """A stable id for a user's email identity (identities are not stored separately)."""
    return str(uuid.uuid5(_IDENTITY_NAMESPACE, f"{user_id}:email"))


def user_json(user: UserRecord) -> dict[str, Any]:
    """The user as GoTrue returns it from /user, /signup and the admin endpoints."""
    created = iso(user.created_at)
    updated = iso(user.updated_at)
    identities: list[dict[str, Any]] = []
    if user.email:
        identities.append({
            "identity_id": identity_id(user.id), "id": user.id, "user_id": user.id,
            "identity_data": {"email": user.email, "email_verified": user.email_confirmed_at is not None,
                              "phone_verified": False, "sub": user.id},
            "provider": "email", "last_sign_in_at": iso(user.last_sign_in_at) or created,
            "created_at": created, "updated_at": updated, "email": user.email,
        })
    body: dict[str, Any] = {
        "id": user.id, "aud": user.aud, "role": user.role, "email": user.email or "",
        "email_confirmed_at": iso(user.email_confirmed_at), "phone": user.phone or "",
        "confirmed_at": iso(user.email_confirmed_at), "last_sign_in_at": iso(user.last_sign_in_at),
        "app_metadata": user.app_metadata, "user_metadata": user.user_metadata,
        "identities": identities, "created_at": created, "updated_at": updated,
        "is_anonymous": user.is_anonymous,
    }
    if user.banned_until is not None:
        body["banned_until"] = iso(user.banned_until)
    return body


def parse_uuid(value: str) -> str | None:
    """The canonical form of a uuid path segment, or None when it is not one."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
