"""The fastest training strategy of :func:`jrnn.unroll` on CPU, by shape, as measured
by ``python -m benchmarks.tune`` (do not edit by hand: run it again on another
machine).  ``(batch, T, hidden) -> (hoist, vjp)`` for an LSTM training step."""

MACHINE = None

CPU: tuple[tuple[tuple[int, int, int], bool, str], ...] = ()
