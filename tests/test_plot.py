"""gradaudit plot: a non-blank PNG that shows the kinks."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from gradaudit.cli import main

pytest.importorskip("matplotlib")


def test_plot_relu6_writes_a_non_blank_png_with_both_kinks(tmp_path, in_root):
    import matplotlib.image as mpimg

    out = tmp_path / "relu6.png"
    result = CliRunner().invoke(main, ["plot", "torch.nn.functional:relu6", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 20_000
    pixels = mpimg.imread(str(out))
    assert pixels.shape[0] > 400 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_plot_reports_what_it_drew(tmp_path, in_root):
    from gradaudit.core import build_options
    from gradaudit.plot import plot_target
    from gradaudit.targets.resolve import resolve

    (relu6,) = resolve("torch.nn.functional:relu6")
    drawn = plot_target(relu6, build_options(dtypes=["float64", "float32"]), str(tmp_path / "a.png"))
    assert drawn["kinks"] == [0.0, 6.0]
    (no_back,) = resolve("samples/seed_relu.py:no_back")
    drawn = plot_target(no_back, build_options(dtypes=["float64", "float32"]), str(tmp_path / "b.png"))
    assert drawn["spurious"] and all(b <= 0 for _, b in drawn["spurious"])
    (where_sqrt,) = resolve("samples/defects.py:where_sqrt")
    drawn = plot_target(where_sqrt, build_options(dtypes=["float64"]), str(tmp_path / "c.png"))
    assert drawn["nonfinite"] > 0


def test_plot_errors(tmp_path, in_root):
    runner = CliRunner()
    assert runner.invoke(main, ["plot", "nosuch:thing", "-o", str(tmp_path / "x.png")]).exit_code == 2
    assert runner.invoke(main, ["plot", "samples/", "-o", str(tmp_path / "x.png")]).exit_code == 2
