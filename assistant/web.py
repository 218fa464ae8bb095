"""Safe page fetching for the `fetch_page` tool: a URL in, the page's main text out, or a one-line FetchError.

Every redirect hop is checked against a `FetchPolicy` (the scheme, and the address the host resolves to, so
that a page cannot send the model to 127.0.0.1 or the cloud metadata service); the body is streamed with a
byte cap and a wall-clock cap; only HTML and plain text are read, and binary data posing as HTML is refused.
A host is resolved once, per connection, in the network layer (`_GuardedNetwork`): the addresses are checked
and the socket connects to a checked one, so a DNS answer that changes between check and connect (DNS
rebinding) cannot reach a private address; Host and TLS SNI still carry the name. The same layer caps every
socket read and write by what is left of the fetch's deadline: a drip of bytes cannot outlast it. With an
HTTP(S) proxy configured in the environment the proxy resolves names, and only the up-front check applies.

    from assistant.web import FetchPolicy, fetch_page
    page = fetch_page("https://example.org/", FetchPolicy())
    print(page.title, page.text[:200])
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpcore
import httpx

from assistant import __version__
from assistant.errors import FetchError

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown")
# Signatures of formats that are sometimes mislabelled as text/html.
_MAGIC = (b"%PDF-", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"\x7fELF")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


@dataclass
class FetchPolicy:
    """What a fetch may do. `allowed_hosts` are trusted even when they resolve to a private address."""

    allow_private: bool = False
    allowed_schemes: tuple[str, ...] = ("http", "https")
    timeout: float = 10.0
    max_bytes: int = 2_000_000
    max_redirects: int = 5
    user_agent: str = f"search-assistant/{__version__}"
    allowed_hosts: tuple[str, ...] = ()


@dataclass
class Page:
    """A fetched page: `url` as asked for, `final_url` after redirects, `bytes` read from the body."""

    url: str
    final_url: str
    title: str
    text: str
    content_type: str
    truncated: bool
    bytes: int


def page_key(url: str, policy: FetchPolicy) -> str:
    """The cache key of a page: its URL and what the policy let its fetch reach (private addresses, trusted hosts).

    A page read under allow_private (or from a trusted private host) is then never served from the cache to a
    run that could not have fetched it."""
    trusted = sorted({h.lower() for h in policy.allowed_hosts})
    return json.dumps([url, policy.allow_private, trusted], ensure_ascii=False)


def blocked_reason(address: str) -> str | None:
    """Why an IP address must not be fetched ("loopback", "private", …), or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id such as fe80::1%eth0
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for reason in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{reason}"):
            return reason.replace("_", "-")
    # Shared address space (100.64.0.0/10) and the like: neither private nor reachable on the internet.
    return None if ip.is_global else "non-global"


def _trusted(host: str, policy: FetchPolicy) -> bool:
    return policy.allow_private or host.lower() in {h.lower() for h in policy.allowed_hosts}


def resolve(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """The addresses of `host`, once resolved; FetchError if any is one the policy forbids (loopback, private, …)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise FetchError(f"could not resolve host {host!r}: {e}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not _trusted(host, policy):
        for address in addresses:  # all of them: one private answer among public ones is still an attack
            reason = blocked_reason(address)
            if reason:
                raise FetchError(
                    f"refused to fetch {host} ({address}): {reason} address — only public hosts are allowed"
                )
    return addresses


def check_address(host: str, port: int, policy: FetchPolicy) -> None:
    """Raise FetchError if `host` resolves to an address the policy forbids (loopback, private, …)."""
    if not _trusted(host, policy):
        resolve(host, port, policy)


def check_url(url: str, policy: FetchPolicy, *, resolve_host: bool = True) -> httpx.URL:
    """Parse `url` and raise FetchError unless its scheme is allowed and its host is public (per policy).
    `resolve_host=False` checks the scheme only, for a client whose network layer checks each address."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as e:
        raise FetchError(f"invalid URL {url[:200]!r}: {e}") from None
    if parsed.scheme not in policy.allowed_schemes:
        allowed = ", ".join(policy.allowed_schemes)
        raise FetchError(f"refused to fetch {url[:200]!r}: scheme {parsed.scheme!r} is not one of {allowed}")
    if not parsed.host:
        raise FetchError(f"invalid URL {url[:200]!r}: no host")
    if resolve_host:
        check_address(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), policy)
    return parsed


def fetch_page(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> Page:
    """Fetch `url` under `policy` and return its main text; every failure is a one-line FetchError.
    A given `client` is used as it is (its own resolver connects): each hop is then checked up front."""
    own_client = client is None
    deadline = time.monotonic() + policy.timeout
    guarded = False
    if client is None:
        proxied = any(urllib.request.getproxies().get(scheme) for scheme in policy.allowed_schemes)
        guarded = not proxied
        transport = _GuardedTransport(_GuardedNetwork(policy, deadline)) if guarded else None
        client = httpx.Client(follow_redirects=False, transport=transport)
    try:
        return _fetch(url, policy, client, deadline, guarded)
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {policy.timeout:g}s fetching {url}") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise FetchError(f"could not fetch {url}: {detail}") from None
    finally:
        if own_client:
            client.close()


def _fetch(url: str, policy: FetchPolicy, client: httpx.Client, deadline: float, guarded: bool) -> Page:
    headers = {
        "User-Agent": policy.user_agent,
        "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,*/*;q=0.1",
    }
    current = url
    for _ in range(policy.max_redirects + 1):
        target = check_url(current, policy, resolve_host=not guarded)
        timeout = httpx.Timeout(_remaining(deadline, policy, url))
        with client.stream("GET", target, headers=headers, timeout=timeout, follow_redirects=False) as resp:
            if resp.is_redirect:
                current = str(resp.url.join(resp.headers["location"]))
                continue
            if resp.status_code >= 400:
                # the standard phrase, not the server's: a failure becomes a note the model reads
                phrase = httpx.codes.get_reason_phrase(resp.status_code)
                raise FetchError(f"HTTP {resp.status_code} {phrase} from {current}".replace("  ", " "))
            mime, charset = _content_type(resp.headers.get("content-type", ""))
            if mime not in HTML_TYPES + TEXT_TYPES:
                raise FetchError(f"refused {current}: content type {mime!r} is not HTML or plain text")
            body, truncated = _read_body(resp, policy, deadline, url)
            final_url = str(resp.url)
        if _looks_binary(body, charset):
            raise FetchError(f"refused {final_url}: binary data served as {mime}")
        if mime in HTML_TYPES and not charset:
            match = _META_CHARSET.search(body[:4096])
            charset = match.group(1).decode("ascii") if match else ""
        text = _decode(body, charset, truncated)
        if mime in HTML_TYPES:
            title, text = extract_html(text, final_url)
        else:
            title = ""
        return Page(url, final_url, title, text.replace("\x00", ""), mime, truncated, len(body))
    raise FetchError(f"too many redirects (more than {policy.max_redirects}) fetching {url}")


def _remaining(deadline: float, policy: FetchPolicy, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"timed out after {policy.timeout:g}s fetching {url}")
    return left


class _GuardedNetwork(httpcore.NetworkBackend):
    """httpcore's network layer with two guards: each host resolved once, checked, and the socket connected
    to a checked address; every read and write bounded by the fetch's deadline, not only by a per-read timeout."""

    def __init__(self, policy: FetchPolicy, deadline: float):
        self.policy, self.deadline = policy, deadline
        self.inner = httpcore.SyncBackend()

    def _left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout(f"timed out after {self.policy.timeout:g}s")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in resolve(host, port, self.policy):
            try:
                stream = self.inner.connect_tcp(address, port, self._left(timeout), local_address, socket_options)
            except httpcore.ConnectError as e:  # try the next address, as socket.create_connection would
                error = e
                continue
            return _DeadlineStream(stream, self)
        raise error or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("page fetches do not use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write times out at the fetch's deadline at the latest."""

    def __init__(self, stream: httpcore.NetworkStream, network: _GuardedNetwork):
        self.stream, self.network = stream, network

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.network._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.network._left(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host (httpcore passes it), so SNI and certificate checks use the name.
        tls = self.stream.start_tls(ssl_context, server_hostname, self.network._left(timeout))
        return _DeadlineStream(tls, self.network)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over `_GuardedNetwork`: httpx exposes no network-backend option, so the pool is
    rebuilt with the same TLS context (tests/test_fault_pages.py fails if an httpx upgrade breaks this)."""

    def __init__(self, network: _GuardedNetwork):
        super().__init__()
        ssl_context = getattr(self._pool, "_ssl_context", None)
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=network)


def _content_type(header: str) -> tuple[str, str]:
    # A missing Content-Type is read as HTML; the binary check still guards the body.
    mime, _, params = header.partition(";")
    match = re.search(r"charset\s*=\s*[\"']?([^\"';\s]+)", params, re.I)
    return (mime.strip().lower() or "text/html"), (match.group(1) if match else "")


def _read_body(resp: httpx.Response, policy: FetchPolicy, deadline: float, url: str) -> tuple[bytes, bool]:
    # iter_bytes() yields decompressed data, so the cap also bounds a gzip bomb. Reading one byte past the cap
    # tells a body of exactly max_bytes from a longer one.
    body = bytearray()
    for chunk in resp.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            return bytes(body[: policy.max_bytes]), True
        _remaining(deadline, policy, url)  # a slow drip never ends on its own
    return bytes(body), False


def _looks_binary(body: bytes, charset: str) -> bool:
    sample = body[:8192]
    if sample.startswith(_MAGIC):
        return True
    if charset.lower().startswith(("utf-16", "utf-32")) or sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # wide encodings are full of NUL bytes by design
    controls = sum(1 for b in sample if b < 32 and b not in b"\t\n\r\f\x1b")
    return bool(sample) and (sample.count(0) > 2 or controls > len(sample) * 0.05)


def _decode(body: bytes, charset: str, truncated: bool) -> str:
    # A truncated body may end inside a multi-byte character: let the incremental decoder drop it.
    for encoding in (charset, "utf-8"):
        if not encoding:
            continue
        try:
            return codecs.getincrementaldecoder(encoding)("strict").decode(body, final=not truncated)
        except (LookupError, UnicodeError):  # UnicodeError too: "UTF-16 stream does not start with BOM"
            continue
    from charset_normalizer import from_bytes  # installed with httpx/trafilatura; only needed here

    best = from_bytes(body).best()
    if best is not None:
        return str(best)
    return body.decode("utf-8", errors="replace")


def extract_html(html: str, url: str = "") -> tuple[str, str]:
    """Return (title, main text) of an HTML document: trafilatura first, plain tag stripping as fallback."""
    title, text = _trafilatura(html, url)
    if not title:
        match = _TITLE.search(html)
        title = " ".join(_strip_tags(match.group(1)).split()) if match else ""
    if not text:
        text = _strip_tags(html)
    return title.strip(), text.strip()


def _trafilatura(html: str, url: str) -> tuple[str, str | None]:
    try:
        import trafilatura
    except ImportError:
        return "", None  # a broken install degrades to tag stripping rather than losing the page
    # A parser crash on a hostile page should fall back, not fail the whole fetch.
    try:
        text = trafilatura.extract(
            html, url=url or None, include_comments=False, include_tables=True, favor_recall=True
        )
        meta = trafilatura.extract_metadata(html)
    except Exception:
        return "", None
    return (meta.title or "") if meta is not None else "", text


class _TextParser(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _strip_tags(html: str) -> str:
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
