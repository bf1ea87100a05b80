"""Scraping portier's /metrics through the admin listener ([admin] listen +
api_key), as an operator's Prometheus does, and checking it with promtool."""
from __future__ import annotations

import re
import subprocess
import time

API_KEY = "metrics-test-api-key-0123"
ADMIN = {"admin": {"listen": "127.0.0.1:0", "api_key": API_KEY}}
ADMIN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+) \(admin")
SERIES_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$")


def admin_port(p) -> int:
    """The admin listener's port, from `Listening on 127.0.0.1:PORT (admin)`."""
    return int(p.log.wait_for(ADMIN_RE).group(1))


def scrape(port: int) -> str:
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-H", f"Authorization: Bearer {API_KEY}",
                        "-D", "-", f"http://127.0.0.1:{port}/metrics"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")  # text=True: CRLF read as LF
    assert head.split()[1] == "200", head
    assert re.search(r"(?im)^content-type: text/plain; version=0\.0\.4", head), head
    return body


def parse(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1)] = float(m.group(2))
    return out


def promtool(text: str, tmp_path) -> None:
    f = tmp_path / "metrics.txt"
    f.write_text(text)
    with open(f) as fh:
        r = subprocess.run(["promtool", "check", "metrics"], stdin=fh, capture_output=True,
                           text=True, timeout=30)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def wait_metrics(port: int, cond, timeout: float = 10.0) -> dict[str, float]:
    """Scrape until cond(values) holds (some counts land when a connection
    has closed); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        v = parse(scrape(port))
        if cond(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.05)
