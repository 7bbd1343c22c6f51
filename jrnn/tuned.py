"""The fastest training strategy of [`jrnn.unroll`][jrnn.unrolling.unroll] on CPU, by shape, as
measured by ``python -m benchmarks.tune`` (do not edit by hand: run it again on another
machine).  ``(batch, T, hidden) -> (hoist, vjp)`` for an LSTM training step."""

MACHINE = "Intel(R) Xeon(R) Processor"

CPU: tuple[tuple[tuple[int, int, int], bool, str], ...] = (
    ((4, 2048, 64), True, "hoisted"),
    ((4, 2048, 128), True, "hoisted"),
    ((4, 2048, 256), True, "hoisted"),
    ((4, 2048, 512), True, "hoisted"),
    ((8, 1024, 64), True, "hoisted"),
    ((8, 1024, 128), True, "hoisted"),
    ((8, 1024, 256), True, "hoisted"),
    ((8, 1024, 512), True, "hoisted"),
    ((16, 512, 64), False, "autodiff"),
    ((16, 512, 128), True, "hoisted"),
    ((16, 512, 256), True, "hoisted"),
    ((16, 512, 512), True, "hoisted"),
    ((32, 256, 64), False, "autodiff"),
    ((32, 256, 128), True, "hoisted"),
    ((32, 256, 256), False, "autodiff"),
    ((32, 256, 512), True, "hoisted"),
    ((64, 128, 64), False, "autodiff"),
    ((64, 128, 128), False, "autodiff"),
    ((64, 128, 256), False, "autodiff"),
    ((64, 128, 512), False, "autodiff"),
    ((128, 64, 64), False, "autodiff"),
    ((128, 64, 128), False, "autodiff"),
    ((128, 64, 256), False, "autodiff"),
    ((128, 64, 512), False, "autodiff"),
)
