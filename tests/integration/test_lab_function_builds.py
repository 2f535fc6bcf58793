"""The functions that run a module of the lab carry it in their build, which no layer does: each handler imports its
module, and no other of the lab, from the artifact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

LAB_FUNCTIONS = [  # folder, sam build target, the lab module it carries
    ("train_ltv", "build-TrainLtvFunction", "ltv"),
    ("train_embeddings", "build-TrainEmbeddingsFunction", "embeddings"),
    ("rebuild_clusters", "build-RebuildClustersFunction", "clusters"),
]


@pytest.mark.parametrize(("folder", "target", "module"), LAB_FUNCTIONS)
def test_a_lab_function_carries_its_lab_module_and_nothing_else_of_the_lab(tmp_path, folder, target, module):
    makefile = ROOT / "functions" / folder / "Makefile"
    source, artifacts = tmp_path / "source", tmp_path / "artifacts"
    shutil.copytree(makefile.parent, source)  # sam runs the Makefile in a copy of the function's folder
    artifacts.mkdir()
    # PYTHON=true leaves out the wheels (pip would download them); every other step runs as under sam build.
    build = subprocess.run(["make", "-s", "-f", str(makefile), target, f"ARTIFACTS_DIR={artifacts}", "PYTHON=true"],
                           cwd=source, capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    lab = sorted(path.relative_to(artifacts).as_posix() for path in (artifacts / "tailor_lab").rglob("*.py"))
    assert lab == ["tailor_lab/__init__.py", "tailor_lab/training/__init__.py", f"tailor_lab/training/{module}.py"]
    assert (artifacts / "app.py").is_file()

    # The handler imports, with the artifact and the domain layer first on the path as in Lambda, the lab's
    # modules from the artifact and no others; what it calls of the lab is that module's.
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import app\n"
        "lab = {name: module.__file__ for name, module in sys.modules.items() if name.startswith('tailor_lab')}\n"
        "called = {v.__module__ for v in vars(app).values() if getattr(v, '__module__', '').startswith('tailor_lab')}\n"
        "assert called == {sys.argv[3]}, called\n"
        "assert sorted(lab) == ['tailor_lab', 'tailor_lab.training', sys.argv[3]], sorted(lab)\n"
        "assert all(path.startswith(sys.argv[1]) for path in lab.values()), lab\n"
    )
    env = {**os.environ, "DATA_BUCKET": "tailor-data", "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_TRACE_DISABLED": "true"}
    result = subprocess.run([sys.executable, "-c", probe, str(artifacts), str(ROOT / "layers" / "tailor" / "python"),
                             f"tailor_lab.training.{module}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
