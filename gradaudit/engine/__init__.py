"""The engine: calling the target, probes, evaluations, numerics, kinks, scans and tracing. It knows no check code."""
