"""The settings of a workshop's day: who may take a VM, fleet health, session limits, the
waitlist. Access settings may also be changed on the admin pages (stored in the database,
see :mod:`lablink_core.settings`); these are their starting values."""

from __future__ import annotations

import param

from lablink_core.config.sections import Section

ACCESS_MODES = ("open", "code", "allowlist", "signin")


class AccessConfig(Section):
    """Who may take a VM, and how fast anyone may ask."""

    mode: param.Selector[str] = param.Selector(
        default="open",
        objects=list(ACCESS_MODES),
        doc="'open': anyone with the page; 'code': an event code the instructor announces; "
        "'allowlist': listed emails or domains only; 'signin': the email comes from an "
        "OpenID Connect sign-in (verified), not from the form.",
    )
    event_code = param.String(
        default=None, allow_None=True, doc="The event code, in 'code' mode (case-insensitive)."
    )
    allowlist = param.List(
        default=[],
        item_type=str,
        doc="Emails (ada@uni.edu) and domains (@uni.edu) allowed in 'allowlist' mode.",
    )
    oidc_issuer = param.String(
        default=None,
        allow_None=True,
        doc="OpenID Connect issuer URL for 'signin' mode (its /.well-known/openid-configuration "
        "is read at start).",
    )
    oidc_client_id = param.String(default=None, allow_None=True, doc="OIDC client id.")
    oidc_client_secret = param.String(default=None, allow_None=True, doc="OIDC client secret.")
    oidc_scopes = param.String(default="openid email", doc="Scopes asked for at sign-in.")
    request_rate_per_minute = param.Number(
        default=120.0,
        bounds=(0.0, 100000.0),
        doc="Requests per minute one client address may make to /request_vm, /release_vm and "
        "the researcher page (0: unlimited). A classroom behind one NAT shares one address: "
        "keep this and the burst above the class's size.",
    )
    request_burst = param.Integer(
        default=60, bounds=(1, 100000), doc="Requests one address may make at once."
    )
    email_rate_per_minute = param.Number(
        default=10.0,
        bounds=(0.0, 100000.0),
        doc="Requests per minute for one email (0: unlimited).",
    )


class HealthConfig(Section):
    """The healer: which VMs it acts on and how hard it tries."""

    enabled = param.Boolean(default=True, doc="Run the healer (one process at a time).")
    interval_seconds = param.Number(
        default=10.0, bounds=(0.5, 3600.0), doc="Seconds between two passes of the healer."
    )
    boot_timeout_seconds = param.Number(
        default=900.0,
        bounds=(5.0, 86400.0),
        doc="A VM still booting this long after launch (or after a heal action) is stuck.",
    )
    silence_limit_seconds = param.Number(
        default=300.0,
        bounds=(5.0, 86400.0),
        doc="A VM silent this long is healed (it leaves the free pool much earlier, after "
        "app.unresponsive_after_seconds).",
    )
    reboots = param.Integer(default=1, bounds=(0, 10), doc="Reboots tried before a replacement.")
    replacements = param.Integer(
        default=1, bounds=(0, 10), doc="Replacements tried before the VM is marked error."
    )


class SessionConfig(Section):
    """How long a researcher may hold a VM, and when an idle one is taken back."""

    max_minutes = param.Number(
        default=0.0, bounds=(0.0, 10080.0), doc="Longest session, in minutes (0: no limit)."
    )
    idle_minutes = param.Number(
        default=0.0,
        bounds=(0.0, 10080.0),
        doc="Minutes without a connected remote desktop or a busy GPU before the VM is "
        "reclaimed (0: never).",
    )
    warning_minutes = param.Number(
        default=10.0, bounds=(0.0, 1440.0), doc="How long before a reclaim the page warns."
    )
    extensions = param.Integer(
        default=1, bounds=(0, 100), doc="Extensions a researcher may take per session."
    )
    extension_minutes = param.Number(
        default=30.0, bounds=(0.05, 1440.0), doc="Minutes one extension adds."
    )
    gpu_busy_percent = param.Integer(
        default=10, bounds=(1, 100), doc="GPU utilisation that counts as activity."
    )


class WaitlistConfig(Section):
    """The queue researchers join when every VM is taken."""

    enabled = param.Boolean(default=True, doc="Offer a place in the queue instead of a 503.")
    expire_seconds = param.Number(
        default=120.0,
        bounds=(5.0, 86400.0),
        doc="A queue entry whose page (or API client) has not asked for this long is dropped.",
    )
    max_length = param.Integer(default=2000, bounds=(1, 100000), doc="Longest queue.")
