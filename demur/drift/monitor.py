"""`DriftMonitor`: is the error of accepted answers still within alpha?

Fed every verdict (for the acceptance rate) and each human or spot-check outcome (for the
error and the calibration curve), it keeps sliding-window figures and runs a sequential test
on the accepted answers' errors.

The test is a Bernoulli CUSUM of H0: p <= alpha against H1: p >= alpha + margin. Each error
adds log(p1/p0) to the statistic and each correct answer log((1-p1)/(1-p0)); it never falls
below 0, and it alarms at log(horizon/delta). Why this one: the CUSUM is an SPRT restarted at
every outcome, so it reacts to a shift in the middle of a long good stretch as fast as at the
start (a plain SPRT or a confidence sequence on the running mean first has to climb out of all
the good evidence before the shift), and it needs no window size. Its false alarms are
bounded: under H0, or any error rate below alpha, each restarted SPRT crosses with probability
at most delta/horizon (Ville's inequality), so the chance of any false alarm within `horizon`
accepted outcomes is at most delta, with outcomes independent given the past. A single
window's error rate compared with alpha, by contrast, alarms on noise again and again.

What it detects: any error rate above p* = log((1-p0)/(1-p1)) / log(p1(1-p0) / (p0(1-p1)))
(a little under alpha + margin/2) drives the statistic up and alarms eventually; the more the
rate exceeds p*, the sooner. Rates between alpha and p* are out of its reach. The default
margin, alpha/2, puts p* near 1.23 alpha (0.123 for alpha 0.1): a larger margin reacts faster
to large shifts and misses more of the small ones.

Outcomes must be a fair sample of accepted answers (random spot checks): answers reviewed
because a user complained are wrong more often, and would alarm on their own.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from demur.errors import ConfigError
from demur.types import Verdict

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

logger = logging.getLogger("demur.drift")


@dataclass(frozen=True)
class CalibrationBin:
    """Outcomes whose confidence fell in [low, high): how many, how confident, how right."""

    low: float
    high: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class DriftAlarm:
    """The test found the accepted answers' error above alpha.

    `outcome` and `route` count what the monitor had seen when it fired; the evidence starts at
    outcome `since` (the statistic's last restart, an estimate of when the shift began), and
    `errors_since` of the `outcomes_since` outcomes from there were wrong.
    """

    outcome: int
    route: int
    statistic: float
    threshold: float
    since: int
    outcomes_since: int
    errors_since: int
    window_error: float | None
    alpha: float

    @property
    def error_since(self) -> float:
        return self.errors_since / self.outcomes_since if self.outcomes_since else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_since": self.error_since}


@dataclass(frozen=True)
class DriftState:
    """A snapshot: totals since the last reset, sliding-window rates, the test, the curve."""

    routes: int
    accepted: int
    outcomes: int
    window_routes: int
    acceptance_rate: float | None
    window_outcomes: int
    error_rate: float | None
    statistic: float
    threshold: float
    alarmed: bool
    alarms: tuple[DriftAlarm, ...] = ()
    calibration: tuple[CalibrationBin, ...] = ()
    ece: float | None = None
    alpha: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["alarms"] = [alarm.to_dict() for alarm in self.alarms]
        return data


class DriftMonitor:
    """Sliding-window acceptance, error and calibration, and a CUSUM alarm on the error.

        monitor = DriftMonitor(alpha=0.1, delta=0.05, on_alarm=page_someone)
        monitor.observe_verdict(verdict)                        # every route
        monitor.observe_outcome(False, confidence=0.93)         # a spot check of an answer

    On alarm: the `on_alarm` callback, a warning on the "demur.drift" logger with the figures
    as `extra` fields, and the `demur.drift.alarm` counter. `demur.drift.error_rate` and
    `demur.drift.acceptance_rate` gauges follow the windows. After an alarm the statistic
    restarts, so a shift that persists alarms again; `reset()` after a refit starts afresh.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        *,
        delta: float = 0.05,
        margin: float | None = None,
        horizon: int = 10_000,
        window: int = 500,
        bins: int = 10,
        on_alarm: Callable[[DriftAlarm], None] | None = None,
        meter_provider: MeterProvider | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), the error rate to allow; got {alpha}")
        if not 0.0 < delta < 1.0:
            raise ConfigError(f"delta must be in (0, 1), the false-alarm chance; got {delta}")
        if margin is None:
            margin = min(alpha / 2, (1.0 - alpha) / 2)
        if not (margin > 0.0 and alpha + margin < 1.0):
            raise ConfigError(
                f"margin must be > 0 with alpha + margin < 1 (alpha={alpha}); got {margin}"
            )
        for name, value in (("horizon", horizon), ("window", window), ("bins", bins)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        self.alpha, self.delta, self.margin = alpha, delta, margin
        self.horizon, self.window, self.bins = horizon, window, bins
        self.on_alarm = on_alarm
        p0, p1 = alpha, alpha + margin
        self._step_error = math.log(p1 / p0)
        self._step_correct = math.log((1.0 - p1) / (1.0 - p0))
        self.threshold = math.log(horizon / delta)
        self._attributes = dict(attributes or {})
        self._instruments(meter_provider)
        self.reset()

    def _instruments(self, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics

        from demur._version import __version__

        meter = metrics.get_meter("demur.drift", __version__, meter_provider)
        self._alarm_counter = meter.create_counter(
            "demur.drift.alarm",
            unit="{alarm}",
            description="Alarms: accepted answers' error above alpha with confidence 1 - delta",
        )
        self._error_gauge = meter.create_gauge(
            "demur.drift.error_rate",
            unit="1",
            description="Error rate of accepted answers over the sliding window of outcomes",
        )
        self._acceptance_gauge = meter.create_gauge(
            "demur.drift.acceptance_rate",
            unit="1",
            description="Share of routes answered over the sliding window of routes",
        )

    @property
    def detectable_error(self) -> float:
        """The error rate above which the test alarms eventually (p* in the module's notes)."""
        return -self._step_correct / (self._step_error - self._step_correct)

    def reset(self) -> None:
        """Forget everything: the windows, totals, statistic and alarms (after a refit)."""
        self.routes = self.accepted = self.outcomes = 0
        self._routes: deque[bool] = deque(maxlen=self.window)
        self._accepted_in_window = 0
        self._errors: deque[bool] = deque(maxlen=self.window)
        self._errors_in_window = 0
        self._scored: deque[tuple[float, bool]] = deque(maxlen=self.window)
        self.statistic = 0.0
        self._run_start = self._run_outcomes = self._run_errors = 0
        self.alarms: list[DriftAlarm] = []

    @property
    def alarmed(self) -> bool:
        """Whether the test has alarmed since the last reset."""
        return bool(self.alarms)

    # --- feeding it --------------------------------------------------------------------------

    def observe_route(self, accepted: bool) -> None:
        """One route: whether its answer was given to the user."""
        if len(self._routes) == self.window:
            self._accepted_in_window -= self._routes[0]
        self._routes.append(accepted)
        self._accepted_in_window += accepted
        self.routes += 1
        self.accepted += accepted
        self._acceptance_gauge.set(self._accepted_in_window / len(self._routes), self._attributes)

    def observe_verdict(self, verdict: Verdict) -> None:
        """One route's verdict: accepted when it was answered."""
        self.observe_route(verdict.status == "answered")

    def observe_outcome(
        self, correct: bool, *, confidence: float | None = None, accepted: bool = True
    ) -> DriftAlarm | None:
        """A judged answer. Accepted answers' outcomes feed the error window and the test;
        any outcome with a confidence feeds the calibration curve. Returns an alarm if one
        fired."""
        if confidence is not None:
            self._scored.append((min(max(float(confidence), 0.0), 1.0), bool(correct)))
        if not accepted:
            return None
        error = not correct
        if len(self._errors) == self.window:
            self._errors_in_window -= self._errors[0]
        self._errors.append(error)
        self._errors_in_window += error
        self.outcomes += 1
        self._error_gauge.set(self._errors_in_window / len(self._errors), self._attributes)
        statistic = self.statistic + (self._step_error if error else self._step_correct)
        if statistic <= 0.0:
            self.statistic = 0.0
            self._run_outcomes = self._run_errors = 0
            return None
        if not self._run_outcomes:
            self._run_start = self.outcomes
        self.statistic = statistic
        self._run_outcomes += 1
        self._run_errors += error
        return self._alarm() if statistic >= self.threshold else None

    def _alarm(self) -> DriftAlarm:
        alarm = DriftAlarm(
            outcome=self.outcomes,
            route=self.routes,
            statistic=self.statistic,
            threshold=self.threshold,
            since=self._run_start,
            outcomes_since=self._run_outcomes,
            errors_since=self._run_errors,
            window_error=self._errors_in_window / len(self._errors),
            alpha=self.alpha,
        )
        self.alarms.append(alarm)
        self.statistic = 0.0
        self._run_outcomes = self._run_errors = 0
        self._alarm_counter.add(1, self._attributes)
        logger.warning(
            "drift: accepted answers' error is above alpha=%g with confidence %g: %d of the "
            "last %d outcomes since outcome %d were wrong (%.1f%%)",
            self.alpha,
            1 - self.delta,
            alarm.errors_since,
            alarm.outcomes_since,
            alarm.since,
            100 * alarm.error_since,
            extra={f"demur.drift.{key}": value for key, value in alarm.to_dict().items()},
        )
        if self.on_alarm is not None:
            try:
                self.on_alarm(alarm)
            except Exception:  # a failing hook must not stop the monitoring
                logger.exception("drift: the on_alarm callback failed")
        return alarm

    # --- reading it --------------------------------------------------------------------------

    def calibration_curve(self) -> tuple[CalibrationBin, ...]:
        """The window's judged answers binned by confidence: mean confidence and accuracy."""
        counts = [0] * self.bins
        confidence = [0.0] * self.bins
        right = [0] * self.bins
        for value, correct in self._scored:
            index = min(int(value * self.bins), self.bins - 1)
            counts[index] += 1
            confidence[index] += value
            right[index] += correct
        return tuple(
            CalibrationBin(
                low=i / self.bins,
                high=(i + 1) / self.bins,
                count=counts[i],
                mean_confidence=confidence[i] / counts[i] if counts[i] else None,
                accuracy=right[i] / counts[i] if counts[i] else None,
            )
            for i in range(self.bins)
        )

    def state(self) -> DriftState:
        """The monitor's figures now."""
        curve = self.calibration_curve()
        scored = sum(b.count for b in curve)
        ece = (
            sum(
                b.count / scored * abs(b.accuracy - b.mean_confidence)
                for b in curve
                if b.accuracy is not None and b.mean_confidence is not None
            )
            if scored
            else None
        )
        return DriftState(
            routes=self.routes,
            accepted=self.accepted,
            outcomes=self.outcomes,
            window_routes=len(self._routes),
            acceptance_rate=self._accepted_in_window / len(self._routes) if self._routes else None,
            window_outcomes=len(self._errors),
            error_rate=self._errors_in_window / len(self._errors) if self._errors else None,
            statistic=self.statistic,
            threshold=self.threshold,
            alarmed=self.alarmed,
            alarms=tuple(self.alarms),
            calibration=curve,
            ece=ece,
            alpha=self.alpha,
        )

    def __repr__(self) -> str:
        return (
            f"DriftMonitor(alpha={self.alpha}, delta={self.delta}, margin={self.margin}, "
            f"horizon={self.horizon}, window={self.window})"
        )


__all__ = ["CalibrationBin", "DriftAlarm", "DriftMonitor", "DriftState"]
