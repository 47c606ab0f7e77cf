"""The one fit a run makes of its own curve, and the law every fit in the lab shares: y = c + a * x^(-b), with a, b > 0
and c >= 0 (a loss has no negative floor). A run's summary.json holds the plateau L(t) = L_inf + A * t^(-alpha) of its
validation curve (t = tokens trained); gptlab/analysis/fits.py fits the same law across runs.

    python -c "from gptlab.run.curves import fit_power_law as f; import numpy as np; \
               t = np.arange(1, 9) * 1e4; print(f(t, 3 + 50 * t**-0.4))"

Standard errors come from the least-squares covariance, scaled by the residual variance. With fewer than MIN_POINTS
distinct x there is no honest uncertainty, so the fit is refused (FitError).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 5  # 3 parameters + 2 degrees of freedom left for the residual variance
B_MAX = 10.0  # exponent search range (0, B_MAX]; real loss curves sit well inside


class FitError(ValueError):
    """The data cannot support a fit: too few points, bad values, or no decreasing power law fits them."""


@dataclass(frozen=True)
class PowerLaw:
    """y = c + a * x^-b, fitted on n points; *_err are standard errors; cov is over (c, k, b) with k = a * x_ref^-b."""
    c: float
    a: float
    b: float
    c_err: float
    a_err: float
    b_err: float
    n: int
    rmse: float
    x_min: float
    x_max: float
    cov: tuple  # 3 x 3, nested tuples (frozen)

    def __call__(self, x):
        return self.c + self.a * np.asarray(x, dtype=float) ** -self.b

    def predict(self, x: float, level: float = 0.95) -> tuple[float, float, float]:
        """(y, low, high): the fitted curve at x and its `level` confidence interval."""
        from scipy.stats import t as student_t
        u = x / self.x_max
        k = self.a * self.x_max ** -self.b
        grad = np.array([1.0, u ** -self.b, -k * u ** -self.b * np.log(u)])
        se = float(np.sqrt(max(grad @ np.array(self.cov) @ grad, 0.0)))
        half = student_t.ppf(0.5 + level / 2, self.n - 3) * se
        y = float(self(x))
        return y, y - half, y + half


def _best_start(u: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(c, k, b) from a grid over b, solving c and k by linear least squares at each b (variable projection)."""
    best = None
    for b in np.geomspace(1e-3, B_MAX, 400):
        design = np.stack([np.ones_like(u), u ** -b], axis=1)
        (c, k), *_ = np.linalg.lstsq(design, y, rcond=None)
        if k <= 0 or c < 0:
            continue
        sse = float(np.sum((design @ (c, k) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, c, k, b)
    if best is None:
        raise FitError("no decreasing power law c + a*x^-b (a > 0, c >= 0) fits these points: is the loss falling?")
    return best[1:]


def fit_power_law(x, y) -> PowerLaw:
    """Least-squares fit of y = c + a * x^-b; raises FitError on too few or bad points."""
    from scipy.optimize import curve_fit
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise FitError(f"x and y must be 1-D and the same length, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0)):
        raise FitError("every x must be > 0 and every value finite")
    n = len(np.unique(x))
    if n < MIN_POINTS:
        raise FitError(f"{n} distinct points; fitting c + a*x^-b needs at least {MIN_POINTS} "
                       f"(3 parameters and 2 degrees of freedom for the uncertainty), so no extrapolation is made")
    x_max = float(x.max())
    u = x / x_max  # conditioning: the fit runs on x / x_max, so k and b are of order one
    p0 = _best_start(u, y)
    try:
        (c, k, b), cov = curve_fit(lambda u, c, k, b: c + k * u ** -b, u, y, p0=p0,
                                   bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, B_MAX]), max_nfev=20000)
    except (RuntimeError, ValueError) as e:
        raise FitError(f"the least-squares fit did not converge: {e}") from None
    if b > 0.99 * B_MAX:  # the optimum ran to the bound: a step, not a power law (e.g. losses not falling with x)
        raise FitError(f"no power law fits: the exponent ran to its bound {B_MAX:g}; do the values fall smoothly as "
                       "x grows?")
    a = k * x_max ** b
    g = np.array([0.0, x_max ** b, a * np.log(x_max)])  # d a / d (c, k, b)
    err = lambda v: float(np.sqrt(v)) if np.isfinite(v) and v >= 0 else float("inf")
    resid = y - (c + k * u ** -b)
    return PowerLaw(c=float(c), a=float(a), b=float(b), c_err=err(cov[0, 0]), a_err=err(g @ cov @ g),
                    b_err=err(cov[2, 2]), n=len(x), rmse=float(np.sqrt(np.mean(resid ** 2))),
                    x_min=float(x.min()), x_max=x_max, cov=tuple(map(tuple, cov.tolist())))
