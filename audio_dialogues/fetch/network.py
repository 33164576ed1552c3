"""Is the video host reachable at all? One TCP connection says, before a run and when downloads fail.

Without this check a machine that is offline looks like a run of clips that each fail transiently,
and every clip backs off and retries on its own: hours for a large config, and nothing learnt. A
connection that cannot even be opened (no route, DNS failing, refused, timing out) stops the whole run
at once, with that reason, and records nothing against any clip.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from .options import FetchOptions

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks": 1080, "socks4": 1080, "socks4a": 1080, "socks5": 1080,
                  "socks5h": 1080}
#: How long one connection attempt may take before the host counts as unreachable.
CONNECT_TIMEOUT_S = 15.0


def proxy(options: FetchOptions) -> str | None:
    """The proxy downloads go through: ``options.proxy``, else the environment's (``https_proxy`` ...),
    which yt-dlp and ffmpeg both honour."""
    if options.proxy:
        return options.proxy
    # Here, not at the top: urllib.request brings http.client, ssl and email (~35 ms), which a re-run whose
    # clips are all cached never needs.
    from urllib.request import getproxies, proxy_bypass

    target = urlsplit(options.url("x" * 11))
    env = getproxies()
    proxy = env.get(target.scheme.lower()) or env.get("all")
    return proxy if proxy and not proxy_bypass(target.hostname or "") else None


def endpoint(options: FetchOptions) -> tuple[str, int] | None:
    """The host and port every download connects to first: the proxy if there is one, else the video host."""
    url = proxy(options) or options.url("x" * 11)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def unreachable(options: FetchOptions, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the host cannot be reached (a sentence naming it), or ``None`` if a connection opens."""
    target = endpoint(options)
    if target is None:
        return None  # not a network URL (e.g. file://): nothing to check
    host, port = target
    via = " (the proxy)" if proxy(options) else ""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return f"the network is unreachable: cannot resolve {host}{via} ({err.strerror or err})"
    except (OSError, UnicodeError) as err:
        return f"the network is unreachable: cannot resolve {host}{via} ({err})"
    errors = []
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
            return None
        except TimeoutError:
            errors.append((address[0], f"no answer in {timeout_s:.0f} s"))
        except OSError as err:
            errors.append((address[0], err.strerror or str(err)))
    why = "; ".join(dict.fromkeys(msg if addr == host else f"{addr}: {msg}" for addr, msg in errors))
    return f"the network is unreachable: cannot connect to {host}:{port}{via} ({why})"
