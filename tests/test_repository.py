"""The repository's promises about itself: the CI runs the README's command, and the example
config documents every key the code knows."""

import re
import tomllib
from pathlib import Path

from t2ctl import config

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_command


def test_the_example_config_names_every_key_and_loads(tmp_path: Path) -> None:
    text = (ROOT / "config.toml.example").read_text()
    uncommented = re.sub(r"(?m)^# (\w+ = )", r"\1", text)  # commented-out keys count too
    documented = {
        f"{section}.{key}"
        for section, values in tomllib.loads(uncommented).items()
        for key in values
    }
    known = {
        f"{name}.{key}"
        for name, field in config.Settings.model_fields.items()
        if field.annotation is not None and hasattr(field.annotation, "model_fields")
        for key in field.annotation.model_fields
    }
    assert documented == known
    example = tmp_path / "config.toml"
    example.write_text(text)
    assert config.load(example, env={}).mode == "sandbox"
