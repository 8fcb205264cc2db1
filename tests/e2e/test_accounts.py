"""Several Klaviyo accounts side by side (docs/orchestration.md): each Meltano environment gets its own key,
warehouse and rate_limit_share, as Meltano itself resolves them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import _copy_project
from tests.e2e.helpers import FOREIGN_ENV, ROOT

DOC = (ROOT / "docs" / "orchestration.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def accounts_project(meltano_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("accounts-project")
    _copy_project(root)
    (snippet,) = re.findall(r"^```yaml\n(.*?)^```", DOC, flags=re.S | re.M)
    project = yaml.safe_load((root / "meltano.yml").read_text())
    project["environments"] += yaml.safe_load(snippet)["environments"]
    (root / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update({"BRAND_A_KLAVIYO_KEY": "pk_brand_a_0123456789", "BRAND_B_KLAVIYO_KEY": "pk_brand_b_0123456789"})

    def config(environment: str, plugin: str, **extra: str) -> dict:
        done = subprocess.run(
            [str(meltano_bin), f"--environment={environment}", "config", "--unsafe", "print", plugin, "--format=json"],
            cwd=root,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    return config


def test_each_account_has_its_own_key_warehouse_and_share(accounts_project) -> None:
    a, b = accounts_project("brand-a", "tap-klaviyo"), accounts_project("brand-b", "tap-klaviyo")

    assert a["api_key"] == "pk_brand_a_0123456789" and b["api_key"] == "pk_brand_b_0123456789"
    assert a["rate_limit_share"] == 1.0 and b["rate_limit_share"] == 0.5
    assert accounts_project("brand-a", "target-duckdb")["filepath"] == "output/brand-a.duckdb"
    assert accounts_project("brand-b", "target-duckdb")["filepath"] == "output/brand-b.duckdb"


def test_a_share_from_an_environment_variable_reaches_the_plugin(accounts_project) -> None:
    """Meltano 4.4 crashed on a `decimal` setting from the environment; declared as text, it passes."""
    config = accounts_project("brand-a", "tap-klaviyo", TAP_KLAVIYO_RATE_LIMIT_SHARE="0.25")
    assert config["rate_limit_share"] == "0.25", "the plugins read it as 0.25 (tests/test_env_config.py)"
