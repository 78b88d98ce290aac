"""URL rules of the fetcher: which URLs may be fetched, and how real URLs map onto a loopback mirror."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, quote, urljoin, urlsplit, urlunsplit

from curate.schema import Rejection

SCHEMES = ("http", "https")


def canonical(url: str) -> str:
    """The URL the frontier and the cache know a page by: fragment dropped, scheme and host lower case.
    Raises Rejection `fetch_bad_url` for a URL that cannot be parsed (`http://[oops/`)."""
    parts = _split(url.strip())
    netloc = parts.netloc.lower()
    path = quote(parts.path, safe="/%:@!$&'()*+,;=~-._") or "/"  # spaces and non-ASCII are escaped
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def check_url(url: str, allowed_domains: tuple[str, ...]) -> SplitResult:
    """Parse url, or raise Rejection when it is not http(s) or its host is not an allowed domain (or one of
    its subdomains)."""
    parts = _split(url)
    if parts.scheme not in SCHEMES:
        raise Rejection("fetch_bad_scheme", f"only http(s) URLs are fetched: {url[:200]}")
    host = (parts.hostname or "").lower()
    if not host:
        raise Rejection("fetch_bad_url", f"no host in {url[:200]}")
    if not any(host == d or host.endswith("." + d) for d in (d.lower() for d in allowed_domains)):
        raise Rejection("fetch_off_domain", f"{host} is not an allowed domain of this source")
    return parts


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise Rejection("fetch_bad_url", f"{exc}: {url[:200]}") from None
    return parts


def refused_ip(address: str) -> bool:
    """Whether an address is loopback, private, link-local or otherwise not a public internet host."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def is_ip_literal(host: str) -> bool:
    """Whether host is written as an IP address rather than a name."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def to_mirror(url: str, mirror: str) -> str:
    """https://HOST/PATH?QUERY -> MIRROR/HOST/PATH?QUERY (the fixture server's layout)."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.hostname}{parts.path or '/'}{query}"


def resolve_location(location: str, current: str, mirror: str | None) -> str:
    """The real URL a redirect points at: relative Locations resolved, mirror URLs mapped back."""
    if mirror:
        base = mirror.rstrip("/") + "/"
        wire = urljoin(to_mirror(current, mirror), location)
        if wire.startswith(base):
            host, _, rest = wire[len(base) :].partition("/")
            return canonical(f"{urlsplit(current).scheme}://{host}/{rest}")
        return canonical(wire)
    return canonical(urljoin(current, location))
