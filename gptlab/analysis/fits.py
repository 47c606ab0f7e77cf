"""Power-law fits for sweep reports: where a loss curve is heading, and what a bigger model would reach.

    python -c "from gptlab.analysis.fits import fit_power_law as f; import numpy as np; \
               t = np.arange(1, 9) * 1e4; print(f(t, 3 + 50 * t**-0.4))"
    python -m gptlab.report runs/multirun/2026-11-27_21-00-00 predict=124M   # both fits, in report.md

One law, two uses: y = c + a * x^(-b), with a, b > 0 and c >= 0 (a loss has no negative floor).
  plateau  L(t) = L_inf + A * t^(-alpha)  over one run's validation curve, t = tokens trained;
  scaling  L(N) = L_inf + B * N^(-beta)   over the final val losses of runs trained on the same tokens, N = params.
Standard errors come from the least-squares covariance, scaled by the residual variance. A prediction's interval
is the delta method's 95% interval for the fitted curve at that x, with Student's t on n - 3 degrees of freedom.
With fewer than MIN_POINTS distinct x there is no honest uncertainty, so the fit is refused (FitError).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 5  # 3 parameters + 2 degrees of freedom left for the residual variance
B_MAX = 10.0  # exponent search range (0, B_MAX]; real loss curves sit well inside


def fit_record(fit):
    """A fit as report.json writes it: its fields without the covariance; a refusal string, or None, as it is."""
    return fit if fit is None or isinstance(fit, str) else {k: v for k, v in vars(fit).items() if k != "cov"}


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


SURFACE_PARAMS = 5  # E, A, alpha, B, beta


@dataclass(frozen=True)
class Surface:
    """L(N, D) = E + A * N^-alpha + B * D^-beta (Chinchilla's third approach), fitted on n points; *_err are
    standard errors; cov is over (E, a, alpha, b, beta) with a = A * N_max^-alpha and b = B * D_max^-beta."""
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    E_err: float
    alpha_err: float
    beta_err: float
    n: int
    rmse: float
    n_range: tuple
    d_range: tuple
    cov: tuple

    def _terms(self, n, d):
        u, v = np.asarray(n, dtype=float) / self.n_range[1], np.asarray(d, dtype=float) / self.d_range[1]
        a, b = self.A * self.n_range[1] ** -self.alpha, self.B * self.d_range[1] ** -self.beta
        return u, v, a, b

    def __call__(self, n, d):
        u, v, a, b = self._terms(n, d)
        return self.E + a * u ** -self.alpha + b * v ** -self.beta

    def predict(self, n: float, d: float, level: float = 0.95) -> tuple[float, float, float]:
        """(L, low, high) at N = n, D = d: the delta method's `level` interval, Student's t on n - 5 dof."""
        from scipy.stats import t as student_t
        u, v, a, b = self._terms(n, d)
        grad = np.array([1.0, u ** -self.alpha, -a * u ** -self.alpha * np.log(u), v ** -self.beta,
                         -b * v ** -self.beta * np.log(v)])
        se = float(np.sqrt(max(grad @ np.array(self.cov) @ grad, 0.0)))
        half = student_t.ppf(0.5 + level / 2, self.n - SURFACE_PARAMS) * se
        y = float(self(n, d))
        return y, y - half, y + half


def _surface_start(u, v, y):
    """(E, a, alpha, b, beta) from a grid over the two exponents, E, a and b by linear least squares at each."""
    best = None
    grid = np.geomspace(1e-2, B_MAX, 60)
    for al in grid:
        for be in grid:
            design = np.stack([np.ones_like(u), u ** -al, v ** -be], axis=1)
            (e, a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
            if e < 0 or a <= 0 or b <= 0:
                continue
            sse = float(np.sum((design @ (e, a, b) - y) ** 2))
            if best is None or sse < best[0]:
                best = (sse, e, a, al, b, be)
    if best is None:
        raise FitError("no E + A/N^alpha + B/D^beta with positive terms fits these points: does the loss fall with "
                       "both size and tokens?")
    return best[1:]


def fit_surface(n, d, y) -> Surface:
    """Least-squares fit of L(N, D) = E + A N^-alpha + B D^-beta; FitError when the points cannot support it (fewer
    than 7, fewer than 2 sizes or 2 budgets, or an exponent at its bound)."""
    from scipy.optimize import curve_fit
    n, d, y = (np.asarray(a, dtype=float) for a in (n, d, y))
    if not (n.shape == d.shape == y.shape and n.ndim == 1):
        raise FitError("N, D and L must be 1-D and the same length")
    if not (np.all(np.isfinite(n * d * y)) and np.all(n > 0) and np.all(d > 0)):
        raise FitError("every N and D must be > 0 and every value finite")
    need = SURFACE_PARAMS + 2
    if len(y) < need or len(np.unique(n)) < 2 or len(np.unique(d)) < 2:
        raise FitError(f"{len(y)} points over {len(np.unique(n))} sizes and {len(np.unique(d))} budgets; L(N, D) "
                       f"needs at least {need} points (5 parameters and 2 degrees of freedom) over 2 or more of each")
    u, v = n / n.max(), d / d.max()
    p0 = _surface_start(u, v, y)
    model = lambda x, e, a, al, b, be: e + a * x[0] ** -al + b * x[1] ** -be  # noqa: E731
    try:
        p, cov = curve_fit(model, np.stack([u, v]), y, p0=p0, bounds=([0, 0, 0, 0, 0],
                           [np.inf, np.inf, B_MAX, np.inf, B_MAX]), max_nfev=20000)
    except (RuntimeError, ValueError) as e:
        raise FitError(f"the least-squares fit did not converge: {e}") from None
    e, a, al, b, be = map(float, p)
    if max(al, be) > 0.99 * B_MAX:
        raise FitError(f"an exponent ran to its bound {B_MAX:g}: the points do not follow a power law in N and D")
    err = lambda i: float(np.sqrt(cov[i, i])) if np.isfinite(cov[i, i]) and cov[i, i] >= 0 else float("inf")  # noqa
    resid = y - model(np.stack([u, v]), *p)
    return Surface(E=e, A=a * n.max() ** al, alpha=al, B=b * d.max() ** be, beta=be, E_err=err(0), alpha_err=err(2),
                   beta_err=err(4), n=len(y), rmse=float(np.sqrt(np.mean(resid ** 2))),
                   n_range=(float(n.min()), float(n.max())), d_range=(float(d.min()), float(d.max())),
                   cov=tuple(map(tuple, cov.tolist())))
