"""Ensemble simulation of fast/slow SDEs."""
from ._options import FastStep, Histogram, Observables, Precision
from ._simulate import resimulate, simulate

__all__ = ["FastStep", "Histogram", "Observables", "Precision", "resimulate", "simulate"]
