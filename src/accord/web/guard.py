"""Who may talk to the control center: the person who ran ``accord web``, in a tab
on this machine, and nobody else.

Three checks, in this order, on every request:

1. **Host**: the Host header must be the loopback name and port we serve. A page on
   another site that rebinds its own DNS name to 127.0.0.1 reaches our port, but its
   requests carry its own name as Host, so they stop here (DNS rebinding).
2. **Token**: the URL printed at start-up carries a fresh random token. The first
   visit trades it for an HttpOnly, SameSite=Strict cookie and is redirected to the
   same page without it (so it stays out of history and Referer headers). Any other
   local user or program that can open a TCP connection to the port still needs it.
3. **Custom header**: a request that changes something must carry ``X-Accord: 1``
   and a JSON body. A cross-site HTML form can send neither (and a script on another
   origin could only with a CORS preflight, which we never grant).
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

COOKIE = "accord_token"
HEADER = "X-Accord"
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost")

# What the page may load and where it may connect: only this server. No inline
# scripts, so an injected string in a device name cannot run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


def _local_port(request: web.Request) -> int:
    """The port this request came in on (the one we serve, even when 0 was asked)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else -1


def refusal(request: web.Request, token: str) -> str | None:
    """Why ``request`` is refused, in words, or None if it may go on."""
    if request.host not in allowed_hosts(_local_port(request)):
        return "this server answers only to its own loopback address"
    offered = request.query.get("token") or request.cookies.get(COOKIE) or ""
    if not hmac.compare_digest(offered.encode(), token.encode()):
        return "open the link with its token that `accord web` printed"
    if request.method not in SAFE_METHODS:
        if request.headers.get(HEADER) != "1":
            return f"a request that changes something needs the {HEADER} header"
        if request.content_type != "application/json":
            return "a request that changes something sends JSON"
    return None


def middleware(token: str) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        why = refusal(request, token)
        if why is not None:
            return web.Response(status=403, text=f"refused: {why}\n", headers=SECURITY_HEADERS)
        if "token" in request.query and request.method in SAFE_METHODS:
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            clean = request.rel_url.with_query(
                {k: v for k, v in request.query.items() if k != "token"}
            )
            found = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": str(clean)})
            found.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return found
        response = await handler(request)
        if not response.prepared:  # an event stream set its own before it started
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    return guard
