"""An installed tcmerge (a wheel, not the checkout) carries its migrations and can use them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_migrations(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
         str(ROOT)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "No matching distribution" in build.stderr:
        pytest.skip("hatchling cannot be downloaded here: " + build.stderr[-200:])
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("tcmerge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tcmerge/migrations/env.py" in names
    assert "tcmerge/migrations/versions/0001_tc_schema.py" in names
    assert "tcmerge/py.typed" in names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = ("from tcmerge.schema import manage; import tcmerge; "
            "print(tcmerge.__file__); print(manage.migrations_dir()); "
            "print(manage.offline_sql('oracle'))")
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    module_file, migrations, ddl = run.stdout.split("\n", 2)
    assert module_file.startswith(str(unpacked))
    assert migrations.startswith(str(unpacked))
    assert "CREATE TABLE tc_msgarchive" in ddl and "CLOB" in ddl
