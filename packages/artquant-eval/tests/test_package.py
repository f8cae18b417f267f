"""Package-level guarantees: public surface, standalone imports, doctests, optional plotting."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import artquant_eval

SOURCE = Path(artquant_eval.__file__).resolve().parent
FORBIDDEN = (
    "torch",
    "artquant_data",
    "artquant_model",
    "artquant_train",
    "artquant_sdk",
    "pydantic",
)
ALLOWED_THIRD_PARTY = {"numpy", "scipy", "matplotlib"}
PUBLIC_API = {
    "METRICS", "ConfidenceInterval", "ConstantInputError", "DataFileError", "EvalReport",
    "JoinedScores", "LargestError", "LogisticFit", "LogisticFitError", "MetricAccumulator",
    "MetricInputError", "TooFewPairsError", "__version__", "binary_accuracy", "evaluate",
    "fit_logistic", "join_by_id", "js_divergence", "kl_divergence", "krcc", "logistic4",
    "logistic5", "mae", "mse", "plcc", "read_records", "rmse", "scatter_plot", "srcc",
    "wasserstein_distance", "APDDV2_ATTRIBUTE_COLUMNS", "AttributeEvaluation", "AttributeResult",
    "attribute_id", "attribute_plot", "evaluate_attributes", "resolve_attributes",
}  # fmt: skip


def _modules() -> list[str]:
    return ["artquant_eval"] + [
        f"artquant_eval.{info.name}" for info in pkgutil.iter_modules([str(SOURCE)])
    ]


def test_public_surface() -> None:
    # a snapshot: changing the public surface must be a deliberate edit here and in the README
    assert set(artquant_eval.__all__) == PUBLIC_API
    for name in artquant_eval.__all__:
        assert hasattr(artquant_eval, name), name
    # the contract other packages rely on
    for name in (
        "srcc",
        "plcc",
        "krcc",
        "rmse",
        "mae",
        "mse",
        "evaluate",
        "EvalReport",
        "MetricAccumulator",
    ):
        assert name in artquant_eval.__all__
    assert artquant_eval.__version__ == "0.1.0"
    assert (SOURCE / "py.typed").is_file()


def test_import_pulls_in_no_torch_and_no_sibling() -> None:
    code = (
        "import sys, artquant_eval, artquant_eval.cli\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not bad, bad\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib must load only to draw'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_source_imports_only_stdlib_numpy_scipy() -> None:
    """Every import statement of the package, including lazy ones inside functions."""
    found: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
                names = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    third_party = {
        top
        for top in found
        if top not in sys.stdlib_module_names and top not in ("artquant_eval", "__future__")
    }
    assert third_party <= ALLOWED_THIRD_PARTY, {
        t: found[t] for t in third_party - ALLOWED_THIRD_PARTY
    }
    assert found.get("matplotlib", {"_plot.py"}) == {"_plot.py"}


def test_declared_dependencies_are_numpy_and_scipy_only() -> None:
    from importlib.metadata import requires

    required = [r for r in requires("artquant-eval") or [] if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("<")[0].split("=")[0].strip() for r in required) == [
        "numpy",
        "scipy",
    ]


@pytest.mark.parametrize("module", _modules())
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0


def test_doctests_exist_for_the_metrics() -> None:
    finder = doctest.DocTestFinder()
    tested = {
        test.name.rsplit(".", 1)[-1]
        for module in _modules()
        for test in finder.find(importlib.import_module(module))
        if test.examples
    }
    assert {
        "srcc",
        "plcc",
        "krcc",
        "rmse",
        "mae",
        "mse",
        "binary_accuracy",
        "evaluate",
        "kl_divergence",
        "js_divergence",
        "wasserstein_distance",
        "fit_logistic",
        "MetricAccumulator",
    } <= tested


def test_plot_without_matplotlib_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'artquant-eval\[plot\]'"):
        artquant_eval.scatter_plot([1, 2, 3], [1, 2, 3])


def test_scatter_plot_draws_points_curve_and_metrics(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the 'plot' extra")
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 10, 200)
    target = 10 / (1 + np.exp(-(pred - 5))) + rng.normal(0, 0.3, 200)
    report = artquant_eval.evaluate(pred, target)
    path = tmp_path / "scatter.png"
    figure = artquant_eval.scatter_plot(pred, target, report=report, path=path, title="demo")
    ax = figure.axes[0]
    assert len(ax.collections[0].get_offsets()) == 200
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_ydata(), report.logistic(line.get_xdata()))
    assert f"SRCC={report.srcc:.3f}" in ax.get_title()
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_scatter_plot_colours_a_few_groups(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the 'plot' extra")
    pred = np.arange(30.0)
    target = pred + np.tile([0.0, 1.0, -1.0], 10)
    groups = np.repeat(["ink", "oil", "sketch"], 10)
    figure = artquant_eval.scatter_plot(pred, target, groups=groups, fit=None)
    ax = figure.axes[0]
    assert [c.get_label() for c in ax.collections] == ["ink", "oil", "sketch"]
    assert len(ax.lines) == 0  # fit=None and no report: no curve
    many = artquant_eval.scatter_plot(pred, target, groups=[str(i) for i in range(30)], fit=None)
    assert len(many.axes[0].collections) == 1
    with pytest.raises(artquant_eval.MetricInputError, match="one label per pair"):
        artquant_eval.scatter_plot(pred, target, groups=["a"])
