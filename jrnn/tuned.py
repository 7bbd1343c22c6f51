"""The fastest strategies of [`jrnn.unroll`][jrnn.unrolling.unroll] on CPU, by shape, as measured by
``python -m benchmarks.tune --part training|inference`` (do not edit by hand: run it
again on another machine)."""

MACHINE = "Intel(R) Xeon(R) Processor"
"""The CPU that measured `CPU`."""

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
"""``(batch, T, hidden) -> (hoist, vjp)`` for an LSTM training step, one host device."""

INFERENCE_MACHINE = "AMD EPYC"
"""The CPU that measured `CPU_INFERENCE`."""

CPU_INFERENCE: tuple[tuple[tuple[int, int, int], int], ...] = (
    ((2, 2048, 64), 4),
    ((2, 2048, 128), 1),
    ((2, 2048, 256), 2),
    ((2, 2048, 512), 2),
    ((4, 1024, 64), 1),
    ((4, 1024, 128), 1),
    ((4, 1024, 256), 2),
    ((4, 1024, 512), 2),
    ((8, 512, 64), 1),
    ((8, 512, 128), 1),
    ((8, 512, 256), 4),
    ((8, 512, 512), 2),
    ((16, 256, 64), 2),
    ((16, 256, 128), 4),
    ((16, 256, 256), 2),
    ((16, 256, 512), 2),
    ((32, 128, 64), 1),
    ((32, 128, 128), 2),
    ((32, 128, 256), 2),
    ((64, 128, 512), 1),
    ((64, 64, 64), 1),
    ((64, 64, 128), 1),
    ((64, 64, 256), 2),
    ((128, 64, 512), 1),
)
"""``(batch per device, T, hidden) -> lax.scan unroll factor`` for an LSTM forward
pass with every core a host device (``jrnn.use_cpu_cores()``)."""
