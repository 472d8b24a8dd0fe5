import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from flaxfit.cli import main
from flaxfit.tools.demos import h, jit_report, nabla_h, nabla_h_exact
from flaxfit.tools.viz import grid_values


def test_nabla_h_matches_the_analytic_gradient_on_a_grid():
    x, y, _ = grid_values((-jnp.pi, jnp.pi), (-jnp.pi, jnp.pi), h, num=25)
    got = jax.vmap(jax.vmap(nabla_h))(jnp.asarray(x), jnp.asarray(y))
    expected = nabla_h_exact(jnp.asarray(x), jnp.asarray(y))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_grid_values_are_h_on_the_grid():
    x, y, z = grid_values((0.0, 1.0), (2.0, 3.0), h, num=5)
    assert x.shape == y.shape == z.shape == (5, 5)
    np.testing.assert_allclose(z, 2 * np.sin(x) * np.sin(y), rtol=1e-5)


def test_demo_grad_writes_a_real_figure(tmp_path, capsys):
    out = tmp_path / "grad.png"
    assert main(["demo", "grad", "--out", str(out)]) == 0
    image = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert image.shape == (650, 800)
    assert image.std() > 20  # a surface, contours and arrows, not a blank canvas
    assert f"wrote {out}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["grad.png"]  # no temp file left


def test_demo_grad_into_a_missing_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "grad", "--out", str(tmp_path / "nope" / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


def test_jit_report_shows_timings_the_jaxpr_and_the_cost():
    report = jit_report(calls=3)
    assert set(report.eager_seconds) == set(report.compiled_seconds) == {"h", "nabla_h"}
    assert all(t > 0 for t in report.compiled_seconds.values())
    assert "sin" in report.jaxpr and "cos" in report.jaxpr  # grad added the derivative
    assert report.cost["flops"] > 0
    text = report.format()
    assert "speed-up" in text and "XLA cost analysis" in text
