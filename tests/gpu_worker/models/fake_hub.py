"""A local HTTP server speaking the Hugging Face Hub's download protocol, plus plain release assets.

Enough of the Hub for the real `huggingface_hub` client to run end to end: repository info
(`/api/models/{repo}/revision/{rev}`), the file tree (`/api/models/{repo}/tree/{rev}`), and
`HEAD`/`GET /{repo}/resolve/{rev}/{path}` with the commit, ETag and size headers and `Range`.
Repositories can be gated (401 `GatedRepo` without the right bearer token), serve corrupted
bytes, cut a download once in the middle, or stall until released; every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = COMMIT
    token: str | None = None  # gated: files only for `Authorization: Bearer <token>`
    corrupt: set[str] = field(default_factory=set)  # served with one byte changed (the tree keeps the true digest)
    cut_once: dict[str, int] = field(default_factory=dict)  # first GET of the path stops after that many bytes
    stall: dict[str, int] = field(default_factory=dict)  # GETs stop after that many bytes until `released`

    def is_lfs(self, path: str) -> bool:
        return len(self.files[path]) > 1024 or path.endswith((".safetensors", ".pth", ".bin"))


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    authorization: str | None


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class FakeHub:
    """`with FakeHub() as hub:` serves `hub.repos` and `hub.assets` at `hub.url`."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.assets: dict[str, bytes] = {}
        self.seen: list[Seen] = []
        self.sent: dict[str, int] = {}  # bytes of file bodies written, by path
        self.released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def ranges(self, path: str) -> list[str]:
        return [s.range for s in self.seen if s.method == "GET" and s.path.endswith(path) and s.range]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route(body=False)

        def do_GET(self) -> None:
            self._route(body=True)

        def _route(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.seen.append(Seen(self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
            if path.startswith("/api/models/"):
                return self._api(path.removeprefix("/api/models/"))
            if path.startswith("/assets/"):
                name = path.removeprefix("/assets/")
                if name not in hub.assets:
                    return self._status(404)
                return self._file(path, hub.assets[name], {}, body)
            for repo_id, repo in hub.repos.items():
                prefix = f"/{repo_id}/resolve/"
                if path.startswith(prefix):
                    revision, _, name = path.removeprefix(prefix).partition("/")
                    return self._resolve(repo, revision, name, body)
            self._status(404, {"X-Error-Code": "RepoNotFound"})

        def _api(self, rest: str) -> None:
            for repo_id, repo in hub.repos.items():
                if rest.startswith(f"{repo_id}/revision/"):
                    if rest.removeprefix(f"{repo_id}/revision/") not in (repo.commit, "main"):
                        return self._status(404, {"X-Error-Code": "RevisionNotFound"})
                    info = {"id": repo_id, "sha": repo.commit, "gated": "manual" if repo.token else False}
                    return self._json(info)
                if rest.startswith(f"{repo_id}/tree/"):
                    return self._json([_tree_entry(repo, p) for p in sorted(repo.files)])
            self._status(404, {"X-Error-Code": "RepoNotFound"})

        def _resolve(self, repo: Repo, revision: str, name: str, body: bool) -> None:
            if revision not in (repo.commit, "main"):
                return self._status(404, {"X-Error-Code": "RevisionNotFound"})
            if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
                return self._status(401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access is restricted."})
            if name not in repo.files:
                return self._status(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit})
            data = repo.files[name]
            digest = hashlib.sha256(data).hexdigest() if repo.is_lfs(name) else git_blob_id(data)
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{digest}"'}
            if repo.is_lfs(name):
                headers |= {"X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data))}
            if name in repo.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            cut = repo.cut_once.pop(name, None) if body else None
            self._file(name, data, headers, body, cut=cut, stall=repo.stall.get(name) if body else None)

        def _file(
            self,
            key: str,
            data: bytes,
            headers: dict[str, str],
            body: bool,
            cut: int | None = None,
            stall: int | None = None,
        ) -> None:
            start = 0
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted.removeprefix("bytes=").removesuffix("-"))
                if start >= len(data):
                    return self._status(416, {"Content-Range": f"bytes */{len(data)}"})
            part = data[start:]
            self.send_response(206 if start else 200)
            for name, value in headers.items():
                self.send_header(name, value)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if not body:
                return
            limit = min(x for x in (cut, stall, len(part)) if x is not None)
            self._write(key, part[:limit])
            if stall is not None and limit < len(part):
                hub.released.wait(60)
            if limit < len(part):
                self.close_connection = True  # the client sees the body end early, as on a dropped connection
                return
            self.wfile.flush()

        def _write(self, key: str, chunk: bytes) -> None:
            for i in range(0, len(chunk), 256 * 1024):
                self.wfile.write(chunk[i : i + 256 * 1024])
                hub.sent[key] = hub.sent.get(key, 0) + len(chunk[i : i + 256 * 1024])
            self.wfile.flush()

        def _json(self, value: object) -> None:
            payload = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def _tree_entry(repo: Repo, path: str) -> dict[str, object]:
    data = repo.files[path]
    entry: dict[str, object] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
    if repo.is_lfs(path):
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
        entry |= {"oid": git_blob_id(pointer), "lfs": {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}}
    return entry
