"""Connecting the driver to Ray the way Ray users expect.

The address given, else ``RAY_ADDRESS``, else the cluster the last ``ray start``
on this machine recorded (``/tmp/ray/ray_current_cluster``), else a new local
instance. A Ray instance another process started with ``ray.init()`` is never
joined: it ends with that process.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import ray

logger = logging.getLogger(__name__)


def connect(address: str | None, num_cpus: int | None, init_options: dict[str, Any]) -> None:
    """``ray.init`` at ``address`` (see the module docstring); a clear error when the
    cluster refuses the driver."""
    options = dict(init_options)
    options.setdefault("log_to_driver", False)
    options.setdefault("logging_level", logging.ERROR)
    options["runtime_env"] = with_driver_path(options.get("runtime_env"))
    address = address or os.environ.get("RAY_ADDRESS")
    if address is None:
        address = started_here()
    honour_auth_mode()
    if address is None or address == "local":
        options["num_cpus"] = num_cpus
        options.setdefault("include_dashboard", False)
    elif num_cpus is not None:
        logger.warning("RayExecutor: num_cpus=%s ignored: joining %s", num_cpus, address)
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:
        raise ConnectionError(connection_failure(address, exc)) from exc


def started_here() -> str | None:
    """The address of the cluster the last ``ray start`` on this machine recorded, if its
    GCS still runs (``ray stop`` removes the record; a killed head leaves it stale)."""
    try:
        from ray._private.services import find_bootstrap_address, find_gcs_addresses

        recorded: str | None = find_bootstrap_address(None)
        if recorded and recorded in find_gcs_addresses():
            return recorded
    except Exception as exc:
        logger.debug("no ray start cluster found: %s", exc)
    return None


def honour_auth_mode() -> None:
    """Make Ray see ``RAY_AUTH_MODE`` even when it was set after ``import ray`` (Ray reads
    its configuration at import; this is how Ray itself turns token mode on)."""
    if os.environ.get("RAY_AUTH_MODE"):
        try:
            importlib.import_module("ray._raylet").Config.initialize("")
        except Exception as exc:
            logger.debug("RAY_AUTH_MODE could not be refreshed: %s", exc)


def connection_failure(address: str | None, exc: ConnectionError) -> str:
    """What to do when ``ray.init`` could not connect to ``address``."""
    cause: BaseException | None = exc
    while cause is not None:
        if "InvalidAuthToken" in str(cause) or type(cause).__name__ == "AuthenticationError":
            return (
                f"RayExecutor: the Ray cluster at {address} uses token authentication: set "
                "RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token, "
                "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (see `ray get-auth-token`)"
            )
        cause = cause.__cause__
    return f"RayExecutor: cannot connect to the Ray cluster at {address}: {exc}"


def with_driver_path(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The runtime env with the driver's ``sys.path`` as workers' ``PYTHONPATH`` (unless it
    sets one), so code importable here is importable there on the same machine; on other
    machines, ship it with ``runtime_env={"working_dir": ...}``."""
    env = dict(runtime_env or {})
    variables = dict(env.get("env_vars") or {})
    if "PYTHONPATH" not in variables:
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        variables["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["env_vars"] = variables
    return env
