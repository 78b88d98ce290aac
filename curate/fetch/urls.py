"""URL rules of the fetcher: which URLs may be fetched, and how real URLs map onto a loopback mirror."""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import SplitResult, quote, urljoin, urlsplit, urlunsplit

from curate.schema import Rejection

DEFAULT_PORTS = {"http": 80, "https": 443}
SCHEMES = tuple(DEFAULT_PORTS)
_PLAIN_SITE = re.compile(r"(https?)://([A-Za-z0-9.:_~-]+)(?:[/?#]|$)")


def canonical(url: str) -> str:
    """The URL the frontier and the cache know a page by: fragment and default port dropped, scheme and
    host lower case. Raises Rejection `fetch_bad_url` for a URL that cannot be parsed (`http://[oops/`)."""
    parts = _split(url.strip())
    scheme = parts.scheme.lower()
    netloc = parts.netloc.lower()
    if parts.port is not None and parts.port == DEFAULT_PORTS.get(scheme):
        netloc = netloc.rsplit(":", 1)[0]  # https://h:443/ is https://h/: one page, one frontier entry
    path = quote(parts.path, safe="/%:@!$&'()*+,;=~-._") or "/"  # spaces and non-ASCII are escaped
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def check_url(url: str, allowed_domains: tuple[str, ...]) -> None:
    """Raise Rejection when url cannot be parsed, is not http(s), its host is not an allowed domain (or one
    of its subdomains), or its port is not the scheme's default and not listed with the domain
    (`example.org:8443`): a link to port 22 of an allowed host is not a web page of the source."""
    plain = _PLAIN_SITE.match(url)
    if plain:  # the common spelling, without urlsplit's cost (a listing may hold 200,000 links)
        scheme, netloc = plain.groups()
    else:
        try:
            scheme, netloc = urlsplit(url)[:2]
        except ValueError as exc:
            raise Rejection("fetch_bad_url", f"{exc}: {url[:200]}") from None
    refusal = _site_refusal(scheme, netloc, tuple(allowed_domains))
    if refusal is not None:
        reason, detail = refusal
        raise Rejection(
            reason, detail if reason in ("fetch_off_domain", "fetch_bad_port") else detail + url[:200]
        )


@functools.lru_cache(maxsize=4096)
def _site_refusal(scheme: str, netloc: str, allowed_domains: tuple[str, ...]) -> tuple[str, str] | None:
    """Why no URL of scheme://netloc may be fetched (reason, detail), or None: decided once per site, not
    once for each of a listing's 200,000 links."""
    if scheme not in SCHEMES:
        return "fetch_bad_scheme", "only http(s) URLs are fetched: "
    try:
        site = urlsplit(f"{scheme}://{netloc}")
        explicit = site.port
    except ValueError as exc:
        return "fetch_bad_url", f"{exc}: "
    host = (site.hostname or "").lower()
    if not host:
        return "fetch_bad_url", "no host in "
    default = DEFAULT_PORTS[scheme]
    port = default if explicit is None else explicit
    domains = [_domain_port(d) for d in allowed_domains]
    if not any(host == d or host.endswith("." + d) for d, _ in domains):
        return "fetch_off_domain", f"{host} is not an allowed domain of this source"
    if port != default and (host, port) not in domains:
        detail = (
            f"{host}:{port}: only port {default} is fetched for {scheme}; list '{host}:{port}' in "
            "allowed_domains to allow another port"
        )
        return "fetch_bad_port", detail
    return None


def _domain_port(entry: str) -> tuple[str, int | None]:
    """An allowed_domains entry as (host, port): `example.org:8443` names a port, `example.org` none."""
    entry = entry.strip().lower()
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and (":" not in host or host.endswith("]")):  # not a bare IPv6 address
        return host.strip("[]"), int(port)
    return entry.strip("[]"), None


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
    """https://HOST[:PORT]/PATH?QUERY -> MIRROR/HOST[:PORT]/PATH?QUERY (the fixture server's layout; the
    port only when it is not the scheme's default)."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    host = parts.hostname or ""
    if parts.port is not None and parts.port != DEFAULT_PORTS.get(parts.scheme):
        host += f":{parts.port}"  # another port is another site: its own folder, never the default one's
    return f"{mirror.rstrip('/')}/{host}{parts.path or '/'}{query}"


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
