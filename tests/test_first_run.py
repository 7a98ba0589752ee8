"""What a newcomer meets first: where the CLI finds its config and database, a second daemon
on one host, what config show and --help print, and the help pages."""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import requests
import typer
from click.testing import Result
from cryptography.fernet import Fernet
from typer.testing import CliRunner

import t2ctl as t2ctl_package
from t2ctl.cli.main import COMMANDS, Unloaded
from t2ctl.cli.main import app as cli_app
from tests.conftest import (
    LiveServer,
    order_body,
    submit,
    unavailable,
    write_config,
)
from tests.processes import LISTENING, Daemon, serve

REPO = Path(__file__).resolve().parent.parent
# Every command but serve and db migrate must find an existing database.
READERS = [
    ("orders", "list"),
    ("status",),
    ("db", "status"),
    ("config", "check"),
    ("partners", "list"),
    ("queue", "stats"),
    ("reconcile",),
    ("report", "settlement", "--from", "2026-11-01", "--to", "2026-12-01"),
]


def t2ctl(*args: str, env: dict[str, str] | None = None) -> Result:
    """``t2ctl ARGS`` in this process, in the working directory the fixture chose."""
    return CliRunner().invoke(cli_app, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An XDG config directory of the test's own, empty: the caller's never leaks in."""
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    return xdg


def test_outside_its_directory_a_command_names_the_database_it_looked_for_and_creates_none(
    tmp_path: Path, no_user_config: Path
) -> None:
    expected = f"no database at {tmp_path / 't2ctl.db'} (database.url = sqlite:///t2ctl.db"
    for command in READERS:
        result = t2ctl(*command)
        assert result.exit_code == 1, (command, result.stdout, result.stderr)
        assert f"t2ctl: error: {expected}" in result.stderr, command
        hint = "Run t2ctl in the directory `t2ctl serve` runs in, or name its config with"
        assert f"{hint} --config or T2CTL_CONFIG" in " ".join(result.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xdg"]  # no database, no key file

    named = t2ctl("orders", "list", env={"T2CTL_DATABASE__URL": "sqlite:///data/t2.db"})
    said = f"no database at {tmp_path / 'data' / 't2.db'} (database.url = sqlite:///data/t2.db"
    assert f"{said}, from T2CTL_DATABASE__URL;" in named.stderr

    assert t2ctl("db", "migrate").exit_code == 0  # one of the two that may create it
    assert (tmp_path / "t2ctl.db").exists() and (tmp_path / "t2ctl.db.key").exists()
    listed = t2ctl("orders", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []

    # A database whose sandbox key file went missing (a restored backup, say) is refused:
    # a new key would not open what it holds.
    (tmp_path / "t2ctl.db.key").rename(tmp_path / "kept-apart.key")
    keyless = t2ctl("partners", "list")
    assert keyless.exit_code == 1
    said = f"no master key: security.master_key is not set and there is no key file at {tmp_path}"
    assert said in " ".join(keyless.stderr.split())
    assert not (tmp_path / "t2ctl.db.key").exists()


def test_the_config_is_looked_for_in_order_and_config_show_names_the_file_it_used(
    tmp_path: Path, no_user_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def config_at(path: Path, port: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"[server]\nport = {port}\n")
        return path

    named = config_at(tmp_path / "named" / "t2.toml", 1001)
    from_env = config_at(tmp_path / "env" / "t2.toml", 1002)
    local = config_at(tmp_path / "config.toml", 1003)
    user = config_at(no_user_config / "t2ctl" / "config.toml", 1004)

    def shown(*args: str) -> tuple[str | None, int]:
        result = t2ctl(*args, "config", "show", "--json")
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        return data["source"], data["server"]["port"]

    monkeypatch.setenv("T2CTL_CONFIG", str(from_env))
    assert shown("--config", str(named)) == (str(named), 1001)
    assert shown() == (str(from_env), 1002)
    monkeypatch.delenv("T2CTL_CONFIG")
    assert shown() == (str(local), 1003)
    local.unlink()
    assert shown() == (str(user), 1004)
    table = t2ctl("config", "show")
    assert f"t2ctl: mode: sandbox; config: {user}" in table.stderr
    user.unlink()
    assert shown() == (None, 8080)
    nothing = t2ctl("config", "show").stderr
    assert f"config: none found (looked for {tmp_path / 'config.toml'}, {user}, " in nothing
    assert "/etc/t2ctl/config.toml): built-in defaults" in nothing


def test_a_config_file_that_is_not_there_is_not_found_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "config.toml"
    result = t2ctl("--config", str(missing), "orders", "list")
    assert result.exit_code == 3
    assert f"t2ctl: error: config file {missing}: no such file" in result.stderr
    monkeypatch.setenv("T2CTL_CONFIG", str(missing))
    assert t2ctl("status").exit_code == 3
    assert not missing.parent.exists()


def test_from_an_unrelated_directory_the_cli_uses_the_config_at_xdg_config_home(
    server: LiveServer, catalogue, tmp_path: Path, no_user_config: Path, monkeypatch
) -> None:
    submit(server, order_body("T2-XDG-1"))
    (no_user_config / "t2ctl").mkdir()
    write_config(no_user_config / "t2ctl" / "config.toml", server.settings)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    listed = t2ctl("orders", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [o["orderId"] for o in json.loads(listed.stdout)] == ["T2-XDG-1"]
    assert list(elsewhere.iterdir()) == []


def test_on_a_host_installed_as_operations_describes_the_cli_works_from_any_directory(
    tmp_path: Path,
) -> None:
    """/etc/t2ctl/config.toml as the README installs it (config.toml.example, database.url
    made absolute, the master key in the environment), in a mount namespace of the test's own
    with /etc overlaid, so the host's /etc is never written."""
    private = ["unshare", "--mount", "true"]
    if os.geteuid() != 0 or not shutil.which("unshare") or subprocess.run(private).returncode:
        unavailable("needs root and a mount namespace (unshare) for a private /etc")
    state = tmp_path / "var-lib-t2ctl"
    state.mkdir()
    config = (REPO / "config.toml.example").read_text()
    config = config.replace('url = "sqlite:///t2ctl.db"', f'url = "sqlite:///{state}/t2ctl.db"')
    assert str(state) in config, "the README's sed no longer matches config.toml.example"
    (tmp_path / "config.toml").write_text(config)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    t2 = f"{sys.executable} -m t2ctl"
    script = f"""set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc
install -d -m 750 /etc/t2ctl && install -m 640 {tmp_path}/config.toml /etc/t2ctl/config.toml
cd / && {t2} db migrate
{t2} partners add acme --webhook-url http://127.0.0.1:9/hooks >/dev/null
mkdir -p {tmp_path}/elsewhere && cd {tmp_path}/elsewhere
{t2} partners list --json && {t2} orders list --json
{t2} config show --json
"""
    env = {
        **os.environ,
        "T2CTL_SECURITY__MASTER_KEY": Fernet.generate_key().decode(),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "no-user-config"),
    }
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    decoder, text, found = json.JSONDecoder(), done.stdout, []
    while text.strip():
        value, end = decoder.raw_decode(text.lstrip())
        found.append(value)
        text = text.lstrip()[end:]
    partners, orders, shown = found
    assert [p["name"] for p in partners] == ["acme"] and orders == []
    assert shown["source"] == "/etc/t2ctl/config.toml"
    assert (state / "t2ctl.db").exists() and (upper / "t2ctl" / "config.toml").exists()


METRICS = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")


def test_a_second_daemon_on_the_host_needs_and_takes_its_own_metrics_port(
    tmp_path: Path,
) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    with serve(first_dir, None, "--port", "0") as first:  # its metrics on a free port
        metrics = first.wait_for(METRICS).group(1)
        taken = {"T2CTL_METRICS__PORT": metrics}  # the second is configured like the first
        with Daemon(second_dir, "serve", "--port", "0", env=taken) as clash:
            assert clash.proc.wait(timeout=30) == 1
            clash.stop(timeout=5)
        assert f"cannot listen for metrics on 127.0.0.1:{metrics}" in clash.log
        assert "pass serve --metrics-port" in clash.log
        with serve(second_dir, None, "--port", "0", "--metrics-port", "0", env=taken) as two:
            url = two.wait_for(LISTENING).group(1)
            own = two.wait_for(METRICS).group(1)
            assert own != metrics
            assert requests.get(f"{url}/t2mobile/health", timeout=5).status_code == 200
            scraped = requests.get(f"http://127.0.0.1:{own}/metrics", timeout=5)
            assert "t2ctl_database_up" in scraped.text
            assert two.stop() == 0
        assert first.stop() == 0


def test_config_show_says_generated_key_true_false_and_durations_as_written(
    tmp_path: Path, no_user_config: Path
) -> None:
    waiting = json.loads(t2ctl("config", "show", "--json").stdout)["security"]["master_key"]
    assert waiting == f"none yet: serve or db migrate generates {tmp_path / 't2ctl.db.key'}"
    assert t2ctl("db", "migrate").exit_code == 0
    table = t2ctl("config", "show").stdout
    rows = dict(re.findall(r"│ (\S+)\s+│ (.*?)\s*│", table))
    assert rows["security.master_key"] == f"generated: {tmp_path / 't2ctl.db.key'}"
    assert rows["zoho.enabled"] == "false" and rows["metrics.enabled"] == "true"
    assert rows["zoho.retry_for"] == "24h" and rows["orders.cancel_window"] == "7d"
    assert rows["webhooks.retry_schedule"] == '["5s", "5m", "30m", "2h", "5h", "10h", "10h"]'
    assert "True" not in table and "False" not in table
    shown = json.loads(t2ctl("config", "show", "--json").stdout)
    assert shown["security"]["master_key"].startswith("generated: ")
    key = (tmp_path / "t2ctl.db.key").read_text().strip()
    assert key not in table and key not in json.dumps(shown)


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env={"COLUMNS": "250"}, prog_name="t2ctl")
    assert result.exit_code == 0, result.stdout
    return result.stdout.rstrip()


def test_help_has_no_type_labels_on_flags_nor_descriptions_cut_mid_sentence() -> None:
    every = help_text("help", "--all")
    assert every.count("Usage: t2ctl") > 40
    assert "<bool>" not in every
    flag = re.compile(r"│ --json\s+Print plain JSON for scripts")
    assert flag.search(help_text("orders", "list", "--help"))
    # Each command's summary in its group's list is one line, however its docstring wraps.
    root = help_text("--help")
    for name in ("sandbox", "reconcile", "serve", "status"):
        summary = first_paragraph(loaded(name).help or "").replace("`", "")  # shown plain
        assert re.search(rf"│ {name}\s+{re.escape(summary)}\s+│", root), name


def first_paragraph(help: str) -> str:
    """A command's one-line help, as a list of commands shows it."""
    return " ".join(inspect.cleandoc(help).split("\n\n")[0].split())


def loaded(name: str) -> click.Command:
    """The root's command ``name``, its module imported, as running it would find it."""
    group = typer.main.get_command(cli_app)
    assert isinstance(group, click.Group)
    found = group.resolve_command(click.Context(group, info_name="t2ctl"), [name])[1]
    assert found is not None
    return found


def test_the_root_lists_each_command_as_its_module_defines_it() -> None:
    """``--help`` reads each command's one-line help from COMMANDS, importing no command: it is
    the summary its module gives, and the page is the one the commands themselves make."""
    group = typer.main.get_command(cli_app)
    assert isinstance(group, click.Group)
    context = click.Context(group, info_name="t2ctl")
    listed = group.get_help(context)
    assert list(group.commands) == list(COMMANDS)
    for name, entry in COMMANDS.items():
        command = group.resolve_command(context, [name])[1]
        assert command is not None and command.name == name
        assert first_paragraph(command.help or "") == entry.summary, name
        assert not command.hidden and not command.deprecated, name
    assert not any(isinstance(command, Unloaded) for command in group.commands.values())
    assert group.get_help(context) == listed


def modules_loaded_by(cwd: Path, *args: str) -> set[str]:
    """The modules a fresh ``t2ctl ARGS`` process has imported when it is done."""
    script = (
        "import json, sys\n"
        "from t2ctl.cli.main import app\n"
        "try:\n"
        f"    app({list(args)!r}, prog_name='t2ctl')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stderr.splitlines()[-1]))


def test_a_command_imports_only_what_it_runs(tmp_path: Path, no_user_config: Path) -> None:
    """--help imports no command's module nor the database or the settings; a command that
    reads the database imports neither the daemon's web stack nor the HTTP client."""
    helped = modules_loaded_by(tmp_path, "--help")
    assert {m for m in helped if m.startswith("t2ctl.cli.")} <= {
        "t2ctl.cli.main",
        "t2ctl.cli.context",
        "t2ctl.cli.output",
    }
    assert not {"peewee", "pydantic", "t2ctl.config", "t2ctl.db"} & helped
    t2ctl("db", "migrate")
    for command in (["orders", "list"], ["status"]):
        loaded = modules_loaded_by(tmp_path, *command)
        assert "t2ctl.db" in loaded, command
        assert not {"flask", "requests", "prometheus_client", "t2ctl.wiring"} & loaded, command


def test_version_prints_the_installed_version() -> None:
    assert help_text("--version") == f"t2ctl {t2ctl_package.__version__}"


def test_help_pages_are_the_commands_own_and_an_unknown_one_is_a_usage_error() -> None:
    assert help_text("help", "orders", "list") == help_text("orders", "list", "--help")
    assert help_text("help") == help_text("--help")
    unknown = CliRunner().invoke(cli_app, ["help", "orders", "frobnicate"])
    assert unknown.exit_code == 2
    assert "`t2ctl orders frobnicate` is not a command" in unknown.stderr


def test_every_place_says_to_keep_the_master_key_apart_from_backups(cli, migrated) -> None:
    texts = [REPO / "README.md", REPO / "daemon" / "README.md", *(REPO / "docs").glob("*.md")]
    for path in texts:
        text = " ".join(path.read_text().split())
        assert not re.search(r"(master key|keep the key) with (it|the backup|the copy)", text), path
    if migrated.database.is_sqlite:
        note = cli("db", "backup", str(Path.cwd() / "copy.db")).stderr
        assert "keep the master key apart from it" in " ".join(note.split())
