"""Where a stage's tasks run: in this process, in a pool of worker processes (curate.pool), or on Ray.

Each executor maps a function over argument tuples and yields (index, value, error) as tasks finish; a failed
task is yielded with its error (and the node it ran on), never raised. This is the only module that imports
Ray (lazily: a command without --address never loads it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from curate.errors import ConfigError, RayUnreachable
from curate.pool import ProcessExecutor
from curate.progress import reporting
from curate.stage import Stage
from curate.units import parse_size


@dataclass(frozen=True)
class Resources:
    """What one task of a stage reserves on a Ray node; scheduling only, so not part of the fingerprint."""

    num_cpus: float | None = None
    memory: int | None = None  # bytes

    @classmethod
    def parse(cls, num_cpus: Any = None, memory: Any = None, where: str = "") -> Resources:
        """Check YAML values (num_cpus: 2 or 0.5; memory: "2GB", "512MiB" or bytes); ConfigError says what."""
        prefix = f"{where}: " if where else ""
        bad_cpus = isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0
        if num_cpus is not None and bad_cpus:
            raise ConfigError(
                f"{prefix}num_cpus must be a positive number (e.g. 1, 2 or 0.5), not {num_cpus!r}"
            )
        if memory is not None:
            try:
                memory = parse_size(memory) if not isinstance(memory, bool) else None
            except ValueError:
                memory = None
            if not memory or memory <= 0:
                raise ConfigError(f"{prefix}memory must be a size such as 2GB, 512MiB or a number of bytes")
        return cls(num_cpus, memory)

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments for a Ray remote function's .options()."""
        options: dict[str, Any] = {}
        if self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        if self.memory is not None:
            options["memory"] = self.memory
        return options


def node_id() -> str:
    """The Ray node this runs on ("local" outside Ray)."""
    try:
        ray = sys.modules.get("ray")  # never imported here just to ask: a local worker has no Ray
        if ray is not None and ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - the node id is informational only
        pass
    return "local"


MapResults = Iterator[tuple[int, Any, BaseException | None]]


class LocalExecutor:
    """Runs tasks one after another in this process: for tests and debugging (resources are ignored)."""

    def map(
        self,
        fn: Callable[..., Any],
        args_list: Sequence[tuple],
        resources: Resources | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> MapResults:
        for i, args in enumerate(args_list):
            try:
                if on_progress is None:
                    value = fn(*args)
                else:
                    with reporting(lambda n, i=i: on_progress(i, n)):
                        value = fn(*args)
                yield i, value, None
            except Exception as exc:  # noqa: BLE001 - a failed task is recorded, not raised
                exc.curate_node = "local"  # type: ignore[attr-defined]
                yield i, None, exc

    def close(self, kill: bool = False) -> None:
        """Nothing to stop."""


def _call(fn: Callable[..., Any], report_to: tuple[Any, int] | None, *args: Any) -> Any:
    try:
        if report_to is None:
            return fn(*args)
        inbox, index = report_to
        with reporting(lambda n: inbox.add.remote(index, n), interval=1.0):
            return fn(*args)
    except Exception as exc:
        # Exceptions pickle their __dict__, so the driver learns which node the task failed on.
        exc.curate_node = node_id()  # type: ignore[attr-defined]
        raise


class _ProgressInbox:
    """A Ray actor that collects documents reported by running tasks until the driver takes them."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()

    def add(self, index: int, n: int) -> None:
        self._counts[index] += n

    def take(self) -> dict[int, int]:
        counts, self._counts = self._counts, Counter()
        return dict(counts)


class RayExecutor:
    """Runs tasks as Ray tasks with retries on worker failure and a bounded number in flight."""

    def __init__(self, max_retries: int = 3, max_in_flight: int | None = None):
        import ray

        self._ray = ray
        self._remote = ray.remote(_call)
        # A stage's tasks are alike: spread them over the nodes, as Ray Data does for reads, rather than
        # filling the driver's node first (under load that left a second node idle).
        self._options = {
            "max_retries": max_retries,
            "retry_exceptions": False,
            "scheduling_strategy": "SPREAD",
        }
        self._cpus = int(ray.cluster_resources().get("CPU", 1))
        self._max_in_flight = max_in_flight

    def in_flight_limit(self, resources: Resources | None = None) -> int:
        """Tasks submitted at once: twice what the cluster can run, so the object store never fills."""
        if self._max_in_flight:
            return self._max_in_flight
        per_task = (resources.num_cpus if resources and resources.num_cpus else None) or 1
        return max(2, int(2 * self._cpus / per_task))

    def check_fits(self, resources: Resources | None) -> None:
        """Refuse a task size no node can hold: Ray would otherwise wait for it forever."""
        if not resources or (resources.num_cpus is None and resources.memory is None):
            return
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        if any(
            (resources.num_cpus or 0) <= n.get("CPU", 0) and (resources.memory or 0) <= n.get("memory", 0)
            for n in nodes
        ):
            return
        largest = max(nodes, key=lambda n: n.get("CPU", 0), default={})
        raise ConfigError(
            f"no node of the cluster can run a task needing num_cpus={resources.num_cpus}, "
            f"memory={resources.memory} bytes (largest node: {largest.get('CPU', 0):g} CPUs, "
            f"{int(largest.get('memory', 0))} bytes of memory); lower the stage's num_cpus/memory"
        )

    def map(
        self,
        fn: Callable[..., Any],
        args_list: Sequence[tuple],
        resources: Resources | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> MapResults:
        ray = self._ray
        self.check_fits(resources)
        remote = self._remote.options(**self._options, **(resources.ray_options() if resources else {}))
        limit = self.in_flight_limit(resources)
        # Large shared arguments (the stage object) go to the object store once, not once per task.
        shared = {id(a): ray.put(a) for args in args_list for a in args if isinstance(a, Stage)}
        # Tasks report documents to a small actor; the driver collects them while it waits.
        inbox = ray.remote(num_cpus=0)(_ProgressInbox).remote() if on_progress else None
        taking = None
        pending: dict[Any, int] = {}
        next_index = 0
        try:
            while next_index < len(args_list) or pending:
                while next_index < len(args_list) and len(pending) < limit:
                    args = [shared.get(id(a), a) for a in args_list[next_index]]
                    report_to = (inbox, next_index) if inbox is not None else None
                    pending[remote.remote(fn, report_to, *args)] = next_index
                    next_index += 1
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5 if inbox else None)
                if inbox is not None:
                    taking = taking or inbox.take.remote()
                    if ray.wait([taking], timeout=0)[0]:
                        for index, n in ray.get(taking).items():
                            on_progress(index, n)
                        taking = None
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        yield index, ray.get(ref), None
                    except Exception as exc:  # noqa: BLE001 - a failed task is recorded, not raised
                        yield index, None, getattr(exc, "cause", None) or exc
        finally:
            # The caller stopped early (a failed global pass, a full disk): stop the tasks still running, so
            # none writes into a scratch folder after it is removed.
            for ref in pending:
                ray.cancel(ref, force=True)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=60)
            if inbox is not None:
                with contextlib.suppress(Exception):
                    ray.kill(inbox)

    def close(self, kill: bool = False) -> None:
        """Ray stays up until the process ends (or ray.shutdown())."""


Executor = LocalExecutor | ProcessExecutor | RayExecutor


def probe_ray_address(address: str, timeout: float = 5.0) -> None:
    """Check that the GCS port of `address` (HOST:PORT, ray://HOST:PORT) accepts a TCP connection, so that a
    wrong address fails in seconds instead of Ray retrying for minutes; raise RayUnreachable saying why."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port_text = target.rpartition(":")
    if not host:
        host, port_text = target, "6379"
    host = host.strip("[]")  # [::1]:6379
    try:
        port = int(port_text)
    except ValueError:
        raise RayUnreachable(
            f"cannot reach Ray at {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), or 'local'"
        ) from None
    found: list[Any] = []
    failure: list[BaseException] = []

    def resolve() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failure.append(exc)

    # getaddrinfo has no timeout of its own: a thread bounds it.
    resolver = threading.Thread(target=resolve, daemon=True)
    resolver.start()
    resolver.join(timeout)
    if not found:
        why = f"{failure[0]}" if failure else f"no answer within {timeout:g} s"
        raise RayUnreachable(f"cannot reach Ray at {address}: host {host!r} does not resolve ({why})")
    errors = []
    for family, kind, proto, _, sockaddr in found:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return
        except OSError as exc:
            errors.append(f"{sockaddr[0]}: {exc.strerror or exc}")
    raise RayUnreachable(
        f"cannot reach Ray at {address} ({'; '.join(errors)}): is `ray start --head` running there, and is "
        "PORT its GCS port (6379 by default)? Without --address (and RAY_ADDRESS) curate runs locally"
    )


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (address or RAY_ADDRESS), or with address 'local' start a Ray in this process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("local", "auto"):
        probe_ray_address(address)
    import ray

    if ray.is_initialized():
        return
    if address and address != "local":
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return
    # A private Ray of this process: its token is generated and used here alone, so Ray's notice that token
    # authentication is on says nothing to act on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # address="local" starts a fresh Ray even if a `ray start` cluster is running on this machine.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )


def make_executor(address: str | None = None, num_cpus: int | None = None) -> Executor:
    """The executor for a run: Ray when an address is given (or RAY_ADDRESS), else a local process pool."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        return ProcessExecutor(num_cpus)
    start_ray(address, num_cpus)
    return RayExecutor()
