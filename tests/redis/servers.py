"""Throwaway standalone servers of each kind the tests target (Valkey 8, Redis 7.0).

Tests that change server-wide state (the functions library, ACL users, whole
databases) run on one of these instead of a shared server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis.client import Redis

from platformdb.binaries import redis_tool


def server_binaries() -> dict[str, Path]:
    """Each server kind found on this machine: the embedded Valkey, and redis-server."""
    found = {"valkey": redis_tool("server")}
    system = shutil.which("redis-server")
    if system and Path(system).resolve() != found["valkey"].resolve():
        found["redis"] = Path(system)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    binary: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(binary: Path, folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--logfile", str(folder / "server.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(binary, port, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if Redis(port=port, socket_connect_timeout=0.2).ping():
                return server
        except Exception:
            time.sleep(0.05)
            continue
    server.stop()
    raise RuntimeError(f"{binary} did not start on port {port}; see {folder}/server.log")
