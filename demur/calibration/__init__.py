"""Calibration: metrics, calibrators, conformal thresholds, and calibration files.

The modules import numpy (and scikit-learn when fitting), so nothing is imported here;
use `demur.PlattCalibrator`, `demur.ConformalThreshold`, ... or the modules directly.
"""
