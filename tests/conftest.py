"""Test configuration: 4 CPU host devices, float64 available, strict dtype promotion, and
reproducible property tests (every Hypothesis test draws the same examples on every run:
``derandomize``, which also leaves out the example database).

The device count is the suite's own, whatever the caller's environment says: any count in
``XLA_FLAGS`` is replaced (the processes the tests start inherit it) and
``JAX_NUM_CPU_DEVICES`` (which would override it) is dropped, here too, and JAX starts when
this file loads (an error if it does not get the 4). These are fake test devices:
``jax_num_cpu_devices`` (``jrnn.use_cpu_cores``) stays unset, or every ``unroll`` would
split its batch over them (``jrnn.sharding.host_split``).

Tests marked ``host_devices`` (tests/test_sharding.py) need those 4 CPU devices as JAX's
default devices. Where the default backend is another (a GPU machine), their module runs
once in a child process on the CPU backend (``JAX_PLATFORMS=cpu``) and each test reports
its outcome there: they neither skip nor run on the wrong devices.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("jrnn", derandomize=True)
settings.load_profile("jrnn")

HOST_DEVICES = 4
_COUNT_FLAG = "--xla_force_host_platform_device_count"

_flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_COUNT_FLAG)]
os.environ["XLA_FLAGS"] = " ".join([*_flags, f"{_COUNT_FLAG}={HOST_DEVICES}"])
os.environ.pop("JAX_NUM_CPU_DEVICES", None)

import jax  # noqa: E402

if jax.config.jax_num_cpu_devices != -1:  # read from JAX_NUM_CPU_DEVICES at `import jax`
    jax.config.update("jax_num_cpu_devices", -1)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# JAX starts here, so the count is fixed whatever the test order: code under test that sets
# the count while JAX has not started (``jrnn train`` run in-process: ``use_cpu_cores``)
# leaves this process's alone.
if len(jax.devices("cpu")) != HOST_DEVICES:
    raise RuntimeError(
        f"tests/conftest.py: JAX has {len(jax.devices('cpu'))} CPU devices, not "
        f"{HOST_DEVICES}: it started before XLA_FLAGS was set"
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"host_devices: needs JAX's {HOST_DEVICES} CPU host devices as its default devices "
        "(elsewhere the module runs in a child process on the CPU backend)",
    )


_CHILD_OUTCOME = pytest.StashKey[str]()  # "" passed in the child, else why not
_CHILD_RUNS: dict[Path, dict[str, str]] = {}


@pytest.fixture(autouse=True)
def _host_devices(request, tmp_path_factory):
    if request.node.get_closest_marker("host_devices") is None:
        return
    if jax.default_backend() == "cpu":  # the 4 host devices (checked above)
        return
    outcomes = _in_a_cpu_child(request.node.path, request.config.rootpath, tmp_path_factory)
    request.node.stash[_CHILD_OUTCOME] = outcomes.get(
        request.node.name, "did not run in the child process:\n" + outcomes.get("", "")
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A ``host_devices`` test on a machine whose default backend is not the CPU: its
    outcome in the child process, instead of running it here."""
    outcome = pyfuncitem.stash.get(_CHILD_OUTCOME, None)
    if outcome is None:
        return None
    if outcome:
        pytest.fail(
            f"on {HOST_DEVICES} CPU host devices in a child process:\n{outcome}", pytrace=False
        )
    return True


def _in_a_cpu_child(path: Path, rootpath: Path, tmp_path_factory) -> dict[str, str]:
    """{test name: "" or what went wrong} of the module ``path`` run once (per pytest run,
    shared by the xdist workers) in a child process on the CPU backend."""
    if path not in _CHILD_RUNS:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            base = base.parent  # the run's folder, above each worker's own
        store = base / f"cpu-child-{path.stem}.json"
        with open(base / f"cpu-child-{path.stem}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not store.exists():
                store.write_text(json.dumps(_run_cpu_child(path, rootpath, base)))
            _CHILD_RUNS[path] = json.loads(store.read_text())
    return _CHILD_RUNS[path]


def _run_cpu_child(path: Path, rootpath: Path, base: Path) -> dict[str, str]:
    report = base / f"cpu-child-{path.stem}.xml"
    argv = [sys.executable, "-m", "pytest", str(path), "-o", "addopts=", "-p", "no:cacheprovider"]
    argv += ["-q", f"--junitxml={report}", f"--basetemp={base / f'cpu-child-{path.stem}'}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(argv, cwd=rootpath, env=env, capture_output=True, text=True, timeout=900)
    outcomes = {"": (done.stdout + done.stderr)[-4000:]}  # for a test the child never ran
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            bad = [e for e in case if e.tag in ("failure", "error", "skipped")]
            outcomes[case.get("name")] = "\n".join(
                f"{e.tag}: {e.get('message', '')}\n{e.text or ''}" for e in bad
            )
    return outcomes


@pytest.fixture
def xla_defaults():
    """Compile with XLA's default optimisations, as users do, for a test that asserts two
    different programs give the same bits (the suite otherwise compiles with
    ``JAX_DISABLE_MOST_OPTIMIZATIONS``, root ``conftest.py``)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The documentation site, ``mkdocs build --strict`` run once per run of the suite and
    shared by the tests that read it (tests/test_docs.py, tests/test_docs_browser.py), also
    across pytest-xdist workers: the first worker to ask builds it under a file lock, the
    others wait for it and read the same build's outcome."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this run's
    site, outcome = shared / "site", shared / "site.json"
    with FileLock(str(shared / "site.lock")):
        if not outcome.exists():
            proc = subprocess.run(
                [sys.executable, "-m", "mkdocs", "build", "--strict"]
                + ["-f", str(Path(__file__).resolve().parents[1] / "mkdocs.yml")]
                + ["-d", str(site)],
                cwd=shared,
                env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
                capture_output=True,
                text=True,
                timeout=600,
            )
            said = proc.stdout[-3000:] + proc.stderr[-6000:]
            outcome.write_text(json.dumps({"returncode": proc.returncode, "said": said}))
    built = json.loads(outcome.read_text())
    if built["returncode"] != 0:
        pytest.fail(f"mkdocs build --strict exited {built['returncode']}:\n{built['said']}")
    return site
