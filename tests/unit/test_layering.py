"""The import rules `make lint` enforces fail when broken: import-linter with pyproject.toml's contracts on the
project's import graph with one import added, and infra/import_rules.py on functions and graphs made for the purpose."""

import copy
import importlib.util

import grimp
import pytest
from importlinter import configuration
from importlinter.application.app_config import settings
from importlinter.application.use_cases import lint_imports, read_user_options

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("import_rules", ROOT / "infra" / "import_rules.py")
rules = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rules)

PYPROJECT = str(ROOT / "pyproject.toml")
configuration.configure()  # what lint-imports sets up before it reads its options
OPTIONS = read_user_options(PYPROJECT)
CONTRACTS = [contract["id"] for contract in OPTIONS.contracts_options]


class GivenGraph:
    """Stands in for import-linter's graph builder, so the contracts run on a graph with an import added."""

    def __init__(self, graph: grimp.ImportGraph):
        self.graph = graph

    def build(self, **_options) -> grimp.ImportGraph:
        return copy.deepcopy(self.graph)


@pytest.fixture(scope="module")
def project_graph() -> grimp.ImportGraph:
    return grimp.build_graph(*OPTIONS.session_options["root_packages"], include_external_packages=True,
                             cache_dir=None)


@pytest.fixture
def broken_contracts():
    """The ids of the contracts lint-imports finds broken on a graph."""
    def check(graph: grimp.ImportGraph) -> set[str]:
        settings.configure(GRAPH_BUILDER=GivenGraph(graph))
        return {contract for contract in CONTRACTS
                if not lint_imports(PYPROJECT, limit_to_contracts=(contract,), cache_dir=None, no_logo=True)}

    yield check
    configuration.configure()


def test_the_project_keeps_every_contract(project_graph, broken_contracts):
    assert broken_contracts(project_graph) == set()


@pytest.mark.parametrize(("importer", "imported", "contract"), [
    ("tailor.events", "tailor_lab.simulator", "layer-alone"),
    ("tailor.ranking.scoring", "tailor_local.stack", "layer-alone"),
    ("tailor.ltv.scoring", "sklearn", "layer-serves-only"),
    ("tailor.models.onnx_model", "onnx", "layer-serves-only"),
    ("tailor_local.stack", "tailor_lab.datasets", "local-aws-without-lab"),
])
def test_an_import_across_the_layering_breaks_its_contract(project_graph, broken_contracts, importer, imported,
                                                           contract):
    graph = copy.deepcopy(project_graph)
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert broken_contracts(graph) == {contract}


def test_serving_may_import_onnxruntime_and_the_cli_the_lab(project_graph, broken_contracts):
    graph = copy.deepcopy(project_graph)
    graph.add_import(importer="tailor.models.onnx_model", imported="onnxruntime", line_number=1,
                     line_contents="import onnxruntime")
    graph.add_import(importer="tailor_cli.main", imported="tailor_lab.evaluation", line_number=1,
                     line_contents="import tailor_lab.evaluation")
    assert broken_contracts(graph) == set()


def write_function(functions, name: str, source: str) -> None:
    (functions / name).mkdir(parents=True, exist_ok=True)
    (functions / name / "app.py").write_text(source)


def test_a_function_imports_what_its_layers_and_the_lambda_runtime_carry(tmp_path):
    write_function(tmp_path, "feed", "import os\nimport json as j\nfrom typing import Any\nimport boto3\n"
                   "from botocore.config import Config\nfrom aws_lambda_powertools import Logger\n"
                   "from pydantic import BaseModel\nfrom tailor.serving import Recommender\nimport helpers\n")
    (tmp_path / "feed" / "helpers.py").write_text("from __future__ import annotations\n")
    assert rules.function_import_problems(tmp_path, shipped={}) == []


def test_a_function_importing_anything_else_is_named_with_file_line_and_module(tmp_path):
    write_function(tmp_path, "feed", "import os\nimport requests\n\ndef handler():\n"
                   "    from sklearn.linear_model import Ridge\n    from tailor_local import stack\n")
    write_function(tmp_path, "erase", "from . import helpers\n")
    problems = rules.function_import_problems(tmp_path, shipped={})
    assert [problem.split(", which")[0] for problem in problems] == [
        f"{tmp_path / 'erase' / 'app.py'}:1: imports .",
        f"{tmp_path / 'feed' / 'app.py'}:2: imports requests",
        f"{tmp_path / 'feed' / 'app.py'}:5: imports sklearn.linear_model",
        f"{tmp_path / 'feed' / 'app.py'}:6: imports tailor_local",
    ]


def test_a_function_may_import_the_project_modules_it_ships_and_no_others(tmp_path):
    write_function(tmp_path, "train", "from tailor_lab.training.ltv import retrain\nfrom tailor_lab.training import ltv\n"
                   "from tailor_lab.training import ranker\n")
    problems = rules.function_import_problems(tmp_path, shipped={"train": frozenset({"tailor_lab.training.ltv"})})
    assert [problem.split(":")[1] for problem in problems] == ["3"]


def test_a_shipped_module_reaches_only_the_layer_and_what_is_shipped_with_it():
    graph = grimp.ImportGraph()
    for module in ("tailor_lab", "tailor_lab.training", "tailor_lab.training.ltv", "tailor_lab.stream", "tailor.events"):
        graph.add_module(module)
    graph.add_import(importer="tailor_lab.training.ltv", imported="tailor.events")
    shipped = {"train_ltv": frozenset({"tailor_lab.training.ltv"})}
    assert rules.shipped_module_problems(graph, shipped) == []
    graph.add_import(importer="tailor_lab.training.ltv", imported="tailor_lab.stream")
    assert [problem.split(" ")[:3] for problem in rules.shipped_module_problems(graph, shipped)] == [
        ["tailor_lab.training.ltv", "imports", "tailor_lab.stream,"]]


def package_graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for module in ("shop", "shop.cart", "shop.cart.items", "shop.cart.totals", "shop.pricing", "shop.tax"):
        graph.add_module(module)
    for importer, imported in imports:
        graph.add_import(importer=importer, imported=imported)
    return graph


def test_a_graph_without_cycles_passes():
    graph = package_graph(("shop.cart.items", "shop.pricing"), ("shop.cart.totals", "shop.cart.items"),
                          ("shop.pricing", "shop.tax"), ("shop", "shop.cart"))
    assert rules.cycle_problems(graph, ["shop"]) == []


def test_each_cycle_is_listed_once_with_an_import_for_each_step():
    graph = package_graph(("shop.cart.items", "shop.pricing"), ("shop.pricing", "shop.cart.totals"),
                          ("shop.cart.totals", "shop.cart.items"), ("shop.pricing", "shop.tax"),
                          ("shop.tax", "shop.pricing"))
    assert rules.cycle_problems(graph, ["shop"]) == [
        "import cycle in shop: cart -> pricing -> cart\n"
        "    shop.cart.items imports shop.pricing\n"
        "    shop.pricing imports shop.cart.totals",
        "import cycle in shop: pricing -> tax -> pricing\n"
        "    shop.pricing imports shop.tax\n"
        "    shop.tax imports shop.pricing",
    ]


def test_a_module_importing_its_own_package_that_imports_it_is_a_cycle():
    graph = package_graph(("shop.cart", "shop.cart.items"), ("shop.cart.items", "shop.cart"))
    assert rules.cycle_problems(graph, ["shop"]) == [
        "import cycle in shop.cart: (__init__) -> items -> (__init__)\n"
        "    shop.cart imports shop.cart.items\n"
        "    shop.cart.items imports shop.cart",
    ]


def test_an_import_deferred_into_a_function_still_closes_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text("import loop.second\n")
    (package / "second.py").write_text("def later():\n    from loop import first\n    return first\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("loop", cache_dir=None)
    assert rules.cycle_problems(graph, ["loop"]) == [
        "import cycle in loop: first -> second -> first\n"
        "    loop.first:1 imports loop.second\n"
        "    loop.second:2 imports loop.first",
    ]
