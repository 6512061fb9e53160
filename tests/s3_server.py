"""A real S3 server for the tests: moto's S3 emulator over HTTP on a free local port.

Nothing of nowcast is mocked: the code under test talks HTTP to this server through s3fs,
as it would to AWS or MinIO. The server checks request signatures against an IAM access key
made at start-up (so wrong credentials fail as they do on AWS), and it can be told to
misbehave the ways a remote store does:

- `stop` closes the listening socket and every open connection (a server that went away),
  `start` brings it back on the same port with its data (moto keeps it in this process);
- `stall` makes matching requests hang longer than the client's read timeout.

`requests` logs (method, path, access key id) of every request served.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

BUCKET = "nowcast-test"
_KEY = re.compile(r"Credential=([^/]+)/")


class S3Server:
    """moto's S3 on 127.0.0.1:`port` (0 = a free one), with fault injection."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[tuple[str, str, str]] = []
        self.stall: Callable[[str, str], float] | None = None  # (method, path) → seconds
        self.on_request: Callable[[str, str], None] | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.key_id = ""
        self.secret = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve (again) on the same port; moto's data lives on in this process."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        owner = self

        class Handler(MotoRequestHandler):  # type: ignore[misc]
            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._conns.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._conns.discard(self.connection)
                super().finish()

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            if environ.get("QUERY_STRING"):
                path += "?" + environ["QUERY_STRING"]
            m = _KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
            with self._lock:
                self.requests.append((method, path, m.group(1) if m else ""))
            if self.on_request is not None:
                self.on_request(method, path)
            delay = self.stall(method, path) if self.stall is not None else 0.0
            if delay:
                time.sleep(delay)
            return moto_app(environ, start_response)

        self._server = make_server("127.0.0.1", self.port, app, True, request_handler=Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Refuse connections from now on and cut the open ones (a server that went away)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def stop_soon(self) -> None:
        """`stop` from another thread (safe to call from inside a request)."""
        threading.Thread(target=self.stop, daemon=True).start()

    def enable_auth(self) -> None:
        """Make an IAM user with an access key and from then on check every signature."""
        import boto3
        from moto import settings

        session = boto3.session.Session(
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap"
        )
        iam = session.client("iam", endpoint_url=self.endpoint, region_name="us-east-1")
        iam.create_user(UserName="nowcast-tests")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="nowcast-tests", PolicyName="all", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="nowcast-tests")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # every request from now on is checked

    def client(self) -> Any:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret
        )
        return session.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def env(self) -> dict[str, str]:
        """The standard environment that points boto/s3fs at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix` of the test bucket: key → content."""
        c = self.client()
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = c.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        return out


def close_clients() -> None:
    """Close and forget s3fs's cached clients (they keep their credentials and sessions).

    zarr opens s3fs asynchronously, and s3fs closes an asynchronous client's HTTP session
    only when asked to; a test that changes the environment must start from new clients.
    """
    import s3fs
    from zarr.core.sync import sync

    for fs in list(s3fs.S3FileSystem._cache.values()):
        creator = getattr(fs, "_s3creator", None)
        if creator is not None:
            with contextlib.suppress(Exception):  # a session on a closed loop: nothing to close
                sync(creator.__aexit__(None, None, None))
            fs._s3 = fs._s3creator = None
    s3fs.S3FileSystem.clear_instance_cache()
