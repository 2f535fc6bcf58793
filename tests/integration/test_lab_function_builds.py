"""TrainLtv's build carries the lab's LTV training, which no layer does: its handler imports it from the artifact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.helpers import ROOT

MAKEFILE = ROOT / "functions" / "train_ltv" / "Makefile"


def test_the_training_function_carries_the_lab_ltv_training_and_nothing_else_of_the_lab(tmp_path):
    source, artifacts = tmp_path / "source", tmp_path / "artifacts"
    shutil.copytree(MAKEFILE.parent, source)  # sam runs the Makefile in a copy of the function's folder
    artifacts.mkdir()
    # PYTHON=true leaves out the wheels (pip would download them); every other step runs as under sam build.
    build = subprocess.run(["make", "-s", "-f", str(MAKEFILE), "build-TrainLtvFunction", f"ARTIFACTS_DIR={artifacts}",
                            "PYTHON=true"], cwd=source, capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    lab = sorted(path.relative_to(artifacts).as_posix() for path in (artifacts / "tailor_lab").rglob("*.py"))
    assert lab == ["tailor_lab/__init__.py", "tailor_lab/training/__init__.py", "tailor_lab/training/ltv.py"]

    # The handler imports, with the artifact and the domain layer first on the path as in Lambda, the lab's
    # modules from the artifact and no others.
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import app\n"
        "lab = {name: module.__file__ for name, module in sys.modules.items() if name.startswith('tailor_lab')}\n"
        "assert app.retrain_from_archive.__module__ == 'tailor_lab.training.ltv', app.retrain_from_archive.__module__\n"
        "assert sorted(lab) == ['tailor_lab', 'tailor_lab.training', 'tailor_lab.training.ltv'], sorted(lab)\n"
        "assert all(path.startswith(sys.argv[1]) for path in lab.values()), lab\n"
    )
    env = {**os.environ, "DATA_BUCKET": "tailor-data", "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_TRACE_DISABLED": "true"}
    result = subprocess.run([sys.executable, "-c", probe, str(artifacts), str(ROOT / "layers" / "tailor" / "python")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
