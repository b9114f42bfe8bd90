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


# -- issue 22: range, dtype, clipped y-range, failures drawn where they were found ----------

def _drawn(spec, tmp_path, name="p.png", **keywords):
    from gradaudit.core import build_options
    from gradaudit.plot import plot_target
    from gradaudit.targets.resolve import resolve

    (target,) = resolve(spec)
    dtypes = keywords.pop("dtypes", ["float64", "float32"])
    return plot_target(target, build_options(dtypes=dtypes), str(tmp_path / name), **keywords)


def test_range_beyond_ten_and_dtype_through_the_cli(tmp_path, in_root):
    runner = CliRunner()
    out = tmp_path / "wide.png"
    result = runner.invoke(main, ["plot", "samples/defects.py:naive_softplus", "--range", "-20", "120",
                                  "--dtype", "float16", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 20_000
    assert runner.invoke(main, ["plot", "torch.nn.functional:relu6", "--range", "5", "1",
                                "-o", str(tmp_path / "x.png")]).exit_code == 2
    assert runner.invoke(main, ["plot", "torch.nn.functional:relu6", "--dtype", "float8",
                                "-o", str(tmp_path / "x.png")]).exit_code == 2


def test_range_and_dtype_are_what_is_drawn(tmp_path, in_root):
    drawn = _drawn("samples/defects.py:naive_softplus", tmp_path, x_range=(-20.0, 120.0), dtype="float16",
                   dtypes=["float64", "float16"])
    assert drawn["range"] == (-20.0, 120.0) and drawn["dtype"] == "float16"
    assert drawn["nonfinite"] > 0  # float16 overflows where float64 does not
    assert {"GA201", "GA403"} & set(drawn["marks"])  # the lower dtype's overflow is marked


def test_a_huge_gradient_at_a_kink_is_clipped_not_flattening(tmp_path, in_root):
    drawn = _drawn("samples/defects.py:where_sqrt", tmp_path, dtypes=["float64"])
    low, high = drawn["ylim"]["grad"]
    assert drawn["clipped"] > 0 and high < 10  # 1/(2 sqrt(x)) near 0 does not set the scale
    relu6 = _drawn("torch.nn.functional:relu6", tmp_path, name="r.png")
    assert relu6["clipped"] == 0 and relu6["ylim"]["grad"][0] < 0 < 1 < relu6["ylim"]["grad"][1]


def test_failures_are_marked_where_found(tmp_path, in_root):
    assert "GA202" in _drawn("samples/defects.py:where_sqrt", tmp_path, dtypes=["float64"])["marks"]
    softplus = _drawn("samples/defects.py:SoftplusThresholdBug", tmp_path, x_range=(-5.0, 40.0),
                      dtypes=["float64", "float16"])
    assert "GA101" in softplus["marks"]
    assert {"GA201", "GA403"} & set(softplus["marks"])
    assert _drawn("torch.nn.functional:relu6", tmp_path, name="r.png")["marks"] == {}


def test_readme_figures_regenerate_from_one_command(tmp_path, in_root):
    """docs/img/relu6.png and docs/img/where_sqrt.png: `python -m gradaudit plot TARGET -o FILE`."""
    import os

    for spec, name in (("torch.nn.functional:relu6", "relu6.png"), ("samples/defects.py:where_sqrt", "where_sqrt.png")):
        assert os.path.getsize(os.path.join(in_root, "docs", "img", name)) > 20_000
        assert CliRunner().invoke(main, ["plot", spec, "-o", str(tmp_path / name)]).exit_code == 0
