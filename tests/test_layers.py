"""The house's layers hold at run time: importing the engine or the Zoho client loads none of
the domain or its faces (docs/architecture.md). Each import runs in a fresh interpreter, so
nothing another test imported can hide a stray import."""

import json
import subprocess
import sys

import pytest

DOMAIN_AND_FACES = ("t2ctl.orders", "t2ctl.webhooks", "t2ctl.api", "t2ctl.cli")


def loaded_by(package: str) -> set[str]:
    """The t2ctl modules a fresh interpreter has loaded after importing ``package`` and, if
    it is a package, every module in it."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"top = importlib.import_module({package!r})\n"
        "for found in pkgutil.walk_packages(getattr(top, '__path__', []), top.__name__ + '.'):\n"
        "    importlib.import_module(found.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('t2ctl'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


def under(modules: set[str], packages: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


@pytest.mark.parametrize(
    ("package", "some_modules"),
    [
        ("t2ctl.jobs", {"t2ctl.jobs.worker", "t2ctl.jobs.scheduler", "t2ctl.jobs.admin"}),
        (
            "t2ctl.provisioning.zoho",
            {"t2ctl.provisioning.zoho.provisioner", "t2ctl.provisioning.zoho.catalogue"},
        ),
    ],
)
def test_the_engine_and_the_zoho_client_load_nothing_of_the_domain(
    package: str, some_modules: set[str]
) -> None:
    loaded = loaded_by(package)
    assert some_modules <= loaded, "the probe imported the whole package"
    assert under(loaded, DOMAIN_AND_FACES) == set()


def test_the_probe_sees_what_a_module_loads() -> None:
    """The same probe does see the domain when a module does load it: it can fail."""
    assert under(loaded_by("t2ctl.wiring"), DOMAIN_AND_FACES) >= {
        "t2ctl.orders.processing",
        "t2ctl.webhooks.delivery",
    }
