"""The public surface: curated names, version, and no heavy or sibling imports."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import artquant_data as aq


def test_public_names_resolve():
    assert aq.__version__ == "0.1.0"
    assert len(set(aq.__all__)) == len(aq.__all__)
    for name in aq.__all__:
        assert hasattr(aq, name), name
    assert all(not n.startswith("_") or n == "__version__" for n in aq.__all__)


def test_import_pulls_no_torch_no_sibling_no_matplotlib():
    code = (
        "import sys, artquant_data, artquant_data.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'transformers', 'matplotlib', 'artquant_eval', 'artquant_model',"
        " 'artquant_train', 'artquant_sdk'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    stats = aq.dataset_stats([aq.ArtRecord(image="a.jpg", score=5.0)], levels=False)
    with pytest.raises(ImportError, match=re.escape("artquant-data[plot]")):
        aq.plot_stats(stats, tmp_path / "x.png")
