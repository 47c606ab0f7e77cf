"""Power-law fits for sweep reports: where a loss curve is heading, and what a bigger model would reach.

    python -c "from gptlab.run.curves import fit_power_law as f; import numpy as np; \
               t = np.arange(1, 9) * 1e4; print(f(t, 3 + 50 * t**-0.4))"
    python -m gptlab.report runs/multirun/2026-11-27_21-00-00 predict=124M   # both fits, in report.md

One law (gptlab/run/curves.py, where a run fits its own plateau), two uses: y = c + a * x^(-b), a, b > 0, c >= 0.
  plateau  L(t) = L_inf + A * t^(-alpha)  over one run's validation curve, t = tokens trained;
  scaling  L(N) = L_inf + B * N^(-beta)   over the final val losses of runs trained on the same tokens, N = params.
Standard errors come from the least-squares covariance, scaled by the residual variance. A prediction's interval
is the delta method's 95% interval for the fitted curve at that x, with Student's t on n - 3 degrees of freedom.
With fewer than MIN_POINTS distinct x there is no honest uncertainty, so the fit is refused (FitError).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gptlab.run.curves import B_MAX, FitError


def fit_record(fit):
    """A fit as report.json writes it: its fields without the covariance; a refusal string, or None, as it is."""
    return fit if fit is None or isinstance(fit, str) else {k: v for k, v in vars(fit).items() if k != "cov"}


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
