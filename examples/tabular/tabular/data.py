"""The data set: pump sensor readings, generated here so the example needs no download.

Each row is one reading of eight sensors on an industrial pump, in the sensors' own units (so
their scales differ by two orders of magnitude, and the network has to standardise them). A
hidden load level moves temperature, speed, current and noise together in every class, as a
pump's duty cycle does; on top of that an overheating pump runs hot (motor and bearing, with a
higher current and a lower oil pressure), and a vibrating one shakes and is loud. The shifts
are a little smaller than the noise plus the load's spread, so the classes overlap: a good
classifier reaches about 95 %, not 100 %.

The generation seed is fixed and independent of the training seed: every training run, on any
machine, sees the same rows, so two trainings differ only by what their seed changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELS = ("normal", "overheat", "vibration")
"""The classes, in the order of the network's outputs (and of model.yaml's output.labels)."""

FEATURES = (
    "motor_temp_c",  # motor winding temperature, °C
    "speed_krpm",  # shaft speed, thousands of RPM
    "vibration_mm_s",  # RMS vibration velocity, mm/s
    "current_a",  # motor current, A
    "oil_pressure_bar",  # lubrication pressure, bar
    "ambient_c",  # air temperature around the pump, °C
    "bearing_temp_c",  # bearing housing temperature, °C
    "noise_db",  # sound level at 1 m, dB(A)
)
"""The eight columns of a row, in order (a request's `features` item is one such row)."""

GENERATION_SEED = 20_240_611
TRAIN_ROWS = 4000
TEST_ROWS = 1000
PRIORS = (0.6, 0.2, 0.2)
"""How often each class occurs: most readings are normal."""

# A normal pump: the mean and the sensor noise (standard deviation) of each feature.
_MEAN = np.array([65.0, 2.9, 2.2, 14.0, 4.5, 24.0, 55.0, 72.0])
_NOISE = np.array([3.5, 0.12, 0.55, 1.1, 0.3, 5.0, 3.5, 2.2])
# What one standard deviation of the hidden load adds to each feature.
_LOAD = np.array([3.0, 0.2, 0.3, 1.4, 0.1, 0.0, 2.5, 1.5])
# What each fault adds to a normal pump's reading.
_SHIFT = {
    "overheat": np.array([10.0, 0.0, 0.0, 2.0, -0.5, 0.0, 8.5, 0.0]),
    "vibration": np.array([0.0, 0.15, 2.1, 0.0, 0.0, 0.0, 2.8, 4.2]),
}
# Warm air warms the motor and the bearing: °C of each per °C of ambient above the mean.
_AMBIENT_COUPLING = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.0])


@dataclass(frozen=True)
class Split:
    """Rows of features (float32, shape (N, 8)) and their class indices (int64, shape (N,))."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> Split:
        """The first `n` rows (all of them with None)."""
        return self if n is None else Split(self.x[:n], self.y[:n])


def generate(rows: int, rng: np.random.Generator) -> Split:
    """`rows` readings drawn with `rng`: classes by PRIORS, then each reading from its class."""
    y = rng.choice(len(LABELS), size=rows, p=PRIORS)
    load = rng.standard_normal((rows, 1))
    x = _MEAN + load * _LOAD + rng.standard_normal((rows, len(FEATURES))) * _NOISE
    x += (x[:, [5]] - _MEAN[5]) * _AMBIENT_COUPLING
    for index, label in enumerate(LABELS):
        if label in _SHIFT:
            x[y == index] += _SHIFT[label]
    return Split(x.astype(np.float32), y.astype(np.int64))


def load_splits() -> tuple[Split, Split]:
    """(train, test): TRAIN_ROWS and TEST_ROWS readings, the same on every call and machine."""
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(GENERATION_SEED).spawn(2))
    return generate(TRAIN_ROWS, train_rng), generate(TEST_ROWS, test_rng)
