"""The calibration exception tree (drawn in the package docstring)."""

from marketdata.errors import MarketDataError


class CalibrationError(MarketDataError):
    """Base of every error the calibration package raises on purpose."""


class DataFormatError(CalibrationError, ValueError):
    """A hopeless input: no known OHLCV layout, too few valid bars, or no ``[garch]`` table."""


class InsufficientData(CalibrationError, ValueError):
    """Too few (or degenerate) returns for a statistic or a fit, or series that do not line up."""


class FitError(CalibrationError):
    """The optimiser found no admissible GARCH(1,1)-t parameters."""
