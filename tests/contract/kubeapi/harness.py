"""`KubeApi`: the test API server on 127.0.0.1:<port>, on a background thread with its own event loop.

kmock is an in-process aiohttp server; blocking clients (the official `kubernetes` client,
Airflow's `KubernetesHook`) would deadlock if they ran on its loop, so the loop runs on a thread
of its own. Everything that touches the state runs on that loop (`_call`), so the test thread,
the HTTP handlers and the controllers never race.

    with KubeApi() as api:  # on a free port the kernel picks (api.port, api.url)
        os.environ["AIRFLOW_CONN_K8S"] = api.connection_json(namespace="shop")
        api.create({...Deployment...})
        api.wait(lambda: api.list("v1", "pods", "shop", "app=web"), timeout_s=10)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kmock

from .controllers import Controllers
from .emulator import ClusterEmulator

T = TypeVar("T")


class KubeApi:
    """A Kubernetes API server for tests (kmock + the semantics in store.py + controllers.py).

    `ready_delay_s`: how long a new pod takes to become Ready. `grace_scale`: wall seconds per
    second of a pod's grace period (0.1: the default 30 s grace lasts 3 s). `tick_s`: controller period.
    """

    def __init__(self, port: int = 0, ready_delay_s: float = 0.5, grace_scale: float = 0.1, tick_s: float = 0.1):
        self.port, self.url = port, f"http://127.0.0.1:{port}"  # port 0: set once the server listens
        self._settings = {"ready_delay_s": ready_delay_s, "grace_scale": grace_scale, "tick_s": tick_s}
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name=f"kubeapi-{id(self):x}", daemon=True)
        self._stop: asyncio.Event | None = None
        self.emulator: ClusterEmulator
        self.controllers: Controllers

    # ---- lifecycle --------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with ClusterEmulator() as emulator, kmock.Server(emulator, port=self.port or None) as server:
                self.port = server.port
                self.url = f"http://127.0.0.1:{self.port}"
                emulator.setup(self._settings["grace_scale"])
                self.emulator = emulator
                self.controllers = Controllers(emulator.store, self._settings["tick_s"],
                                               self._settings["ready_delay_s"])
                task = asyncio.create_task(self.controllers.run(), name="kubeapi-controllers")
                self._ready.set_result(None)
                try:
                    await self._stop.wait()
                finally:
                    emulator.close()  # ends the watch streams, so the server can shut down
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    await asyncio.sleep(0)  # let the watch handlers see `closing`
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(e)
            raise

    def __enter__(self) -> KubeApi:
        self._thread.start()
        self._ready.result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError(f"the kubeapi thread on port {self.port} did not stop")

    def _call(self, fn: Callable[[], T], timeout_s: float = 10) -> T:
        """Run `fn` on the server's loop and return its result (exceptions re-raised here)."""
        async def call() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout_s)

    # ---- client configuration ---------------------------------------------------------------------

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig for plain HTTP on loopback with a dummy bearer token."""
        return {"apiVersion": "v1", "kind": "Config", "current-context": "kubeapi",
                "clusters": [{"name": "kubeapi", "cluster": {"server": self.url}}],
                "users": [{"name": "kubeapi", "user": {"token": "kubeapi-test-token"}}],
                "contexts": [{"name": "kubeapi", "context": {"cluster": "kubeapi", "user": "kubeapi",
                                                              "namespace": namespace}}]}

    def connection_json(self, namespace: str = "default") -> str:
        """The value of AIRFLOW_CONN_<ID> for a `kubernetes` connection to this server."""
        return json.dumps({"conn_type": "kubernetes",
                           "extra": {"kube_config": self.kubeconfig(namespace), "namespace": namespace}})

    # ---- state (direct, not through HTTP: not in `requests()`) ------------------------------------

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create any object as a client's POST would (stamping, defaults, 409); namespace default 'default'."""
        def create() -> dict[str, Any]:
            store = self.emulator.store
            res = store.resource_for(manifest["apiVersion"], manifest["kind"])
            ns = (manifest.get("metadata") or {}).get("namespace") or "default"
            return store.create(res, ns if store.info[res].namespaced else None, manifest)
        return self._call(create)

    def get(self, api_version: str, kind_plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        def get() -> dict[str, Any] | None:
            store = self.emulator.store
            return store.get((store.resource_for(api_version, kind_plural), namespace, name))
        return self._call(get)

    def list(self, api_version: str, kind_plural: str, namespace: str | None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource (namespace None: all), optionally filtered by a label selector string."""
        def list_() -> list[dict[str, Any]]:
            store = self.emulator.store
            res = store.resource_for(api_version, kind_plural)
            return self.emulator._list(res, namespace, {"labelSelector": label_selector} if label_selector else {})[
                "items"]
        return self._call(list_)

    def requests(self, method: str | None = None) -> list[tuple[str, str]]:
        """(METHOD, path?query) of every HTTP request the server saw, in order (optionally one method)."""
        log = self._call(lambda: list(self.emulator.request_log))
        return [r for r in log if method is None or r[0] == method.upper()]

    def fail_next(self, method: str, path_regex: str, status: int) -> None:
        """The next request with this method whose path?query matches `path_regex` (re.search)
        answers `status` with a Status body, and changes nothing."""
        self._call(lambda: self.emulator.fail_next(method, path_regex, status))

    def controller_errors(self) -> list[BaseException]:
        return self._call(lambda: list(self.controllers.errors))

    @staticmethod
    def wait(predicate: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
        """Poll `predicate` until it returns something truthy; return it, or raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout_s} s (last value: {value!r})")
            time.sleep(interval_s)
