"""Event-camera streams: (x, y, t, p) events, their binning into frames, the N-MNIST file format and a
generator of synthetic N-MNIST-like streams.

An event stream is a NumPy structured array with fields ``x``, ``y`` (pixel), ``t`` (microseconds, sorted)
and ``p`` (polarity: 1 ON, 0 OFF), tonic's layout (``tonic.datasets.NMNIST.dtype``). :func:`to_frames`
bins a stream into ``T`` frames ``(T, 2, H, W)`` exactly as ``tonic.transforms.ToFrame(sensor_size,
n_time_bins=T)`` does (equal windows of ``(t_last - t_first) // T`` microseconds from the first event) and
clips the counts to 1: the frames are the spikes a spiking network consumes.

N-MNIST (Orchard et al., "Converting static image datasets to spiking neuromorphic datasets using saccades",
Frontiers in Neuroscience 2015) cannot be downloaded here; :func:`read_nmnist` reads its real binary files
through tonic (``tonic.io.read_mnist_file``: 40 bits an event, x 8, y 8, polarity 1, timestamp 23 bits) and
:func:`load_event_files` validates them. :func:`synthetic_saccade_events` emulates the recording offline, named
as synthetic: a real MNIST digit on a 34x34 sensor is moved along N-MNIST's three saccades (a triangle, 100
ms each) and a pixel emits an event each time its log intensity moves by the contrast threshold, as a DVS
pixel does (Lichtsteiner et al., JSSC 2008).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradleak import DataError, import_optional

#: Field layout of one event (tonic's N-MNIST dtype).
EVENT_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
#: N-MNIST's sensor: width, height, polarities.
NMNIST_SENSOR: tuple[int, int, int] = (34, 34, 2)
#: Log-intensity change that makes a synthetic DVS pixel fire.
CONTRAST_THRESHOLD = 0.2
#: Duration of one synthetic saccade (microseconds); N-MNIST uses three of about 100 ms.
SACCADE_US = 100_000
#: The synthetic camera's path (pixels): a triangle, as N-MNIST's pan-tilt unit moves.
SACCADE_PATH: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.5, 3.0), (3.0, 0.0), (0.0, 0.0))


def to_frames(events: np.ndarray, steps: int, sensor: tuple[int, int, int] = NMNIST_SENSOR) -> np.ndarray:
    """Bin ``events`` into ``(steps, P, H, W)`` float32 frames holding 1 where a pixel fired in a window."""
    width, height, polarities = sensor
    frames = np.zeros((steps, polarities, height, width), dtype=np.float32)
    if len(events) == 0:
        return frames
    t = events["t"]
    window = (int(t[-1]) - int(t[0])) // steps
    starts = np.arange(steps) * window + int(t[0])
    lo, hi = np.searchsorted(t, starts), np.searchsorted(t, starts + window)
    for i, (a, b) in enumerate(zip(lo, hi)):
        chunk = events[a:b]
        frames[i, chunk["p"].astype(int), chunk["y"], chunk["x"]] = 1.0
    return frames


def check_events(events: np.ndarray, source: str, sensor: tuple[int, int, int] = NMNIST_SENSOR) -> np.ndarray:
    """``events`` as :data:`EVENT_DTYPE`, sorted by time; a missing field or an out-of-sensor value raises a
    DataError naming ``source`` and the field."""
    names = events.dtype.names or ()
    for field in EVENT_DTYPE.names:
        if field not in names:
            raise DataError(f"{source}: events lack the field '{field}' (have: {', '.join(names) or 'none'}); "
                            f"an event stream needs the fields x, y, t, p")
    width, height, polarities = sensor
    for field, size in (("x", width), ("y", height), ("p", polarities)):
        values = events[field]
        if len(values) and (values.min() < 0 or values.max() >= size):
            bad = int(values.max()) if values.max() >= size else int(values.min())
            raise DataError(f"{source}: field '{field}' holds {bad}, outside the {width}x{height} sensor's range "
                            f"0..{size - 1}; crop the stream to the sensor or pick the matching sensor size")
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    for field in EVENT_DTYPE.names:
        out[field] = events[field]
    return out[np.argsort(out["t"], kind="stable")]


def read_nmnist(path: str | Path) -> np.ndarray:
    """The events of one N-MNIST ``.bin`` file (checked against the sensor), read by tonic."""
    tonic_io = import_optional("tonic.io", "gradleak-snn[events]", "reading N-MNIST files")
    raw = Path(path).read_bytes()
    if len(raw) % 5:
        raise DataError(f"{path}: {len(raw)} bytes is not a whole number of 5-byte N-MNIST events; "
                        f"pass an N-MNIST .bin file")
    return check_events(tonic_io.read_mnist_file(str(path), dtype=EVENT_DTYPE), str(path))


def read_event_file(path: Path) -> np.ndarray:
    """One recording: an N-MNIST ``.bin``, or an ``.npy`` structured array with fields x, y, t, p."""
    if path.suffix == ".bin":
        return read_nmnist(path)
    if path.suffix == ".npy":
        try:
            events = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc})") from None
        if events.dtype.names is None:
            raise DataError(f"{path}: holds a plain {events.dtype} array, not events; "
                            f"save a structured array with the fields x, y, t, p")
        return check_events(events, str(path))
    raise DataError(f"{path}: unsupported event file; pass N-MNIST .bin files or .npy arrays with fields x, y, t, p")


def load_event_files(path: Path, num_classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The recordings under ``path`` (one file, or a folder: files sorted, labels from digit-named subfolders
    as in N-MNIST's ``Train/<digit>/*.bin``, else 0, 1, 2, ... modulo ``num_classes``)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".bin", ".npy"))
    if not files:
        raise DataError(f"--data {path}: no .bin or .npy event files found; pass N-MNIST .bin files")
    streams = [read_event_file(f) for f in files]
    labels = []
    for i, f in enumerate(files):
        parent = f.parent.name
        labels.append(int(parent) % num_classes if parent.isdigit() and f != path else i % num_classes)
    return streams, np.asarray(labels, dtype=np.int64)


def synthetic_saccade_events(image: np.ndarray, seed: int = 0, sensor: tuple[int, int, int] = NMNIST_SENSOR,
                             substeps: int = 20, threshold: float = CONTRAST_THRESHOLD) -> np.ndarray:
    """SYNTHETIC events of a grayscale ``image`` ``(h, w)`` in [0, 1] seen by a DVS moved along
    :data:`SACCADE_PATH` (``substeps`` positions per saccade, sub-pixel bilinear shifts).

    Each pixel keeps a reference log intensity ``log(I + 0.1)``; when the current value differs by ``k``
    thresholds it emits ``k`` events of the change's sign, spread evenly over the sub-step, and moves its
    reference by ``k`` thresholds. Timestamps get a uniform jitter of up to one microsecond-resolution
    sub-step slot from ``seed``.
    """
    from scipy.ndimage import shift as subpixel_shift

    width, height, _ = sensor
    canvas = np.zeros((height, width))
    oy, ox = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
    canvas[oy:oy + image.shape[0], ox:ox + image.shape[1]] = image
    rng = np.random.default_rng(seed)
    ref = np.log(canvas + 0.1)
    dt = SACCADE_US // substeps
    chunks: list[np.ndarray] = []
    step = 0
    for (y0, x0), (y1, x1) in zip(SACCADE_PATH[:-1], SACCADE_PATH[1:]):
        for k in range(1, substeps + 1):
            step += 1
            a = k / substeps
            frame = subpixel_shift(canvas, (y0 + a * (y1 - y0), x0 + a * (x1 - x0)), order=1, mode="constant")
            diff = np.log(np.clip(frame, 0.0, None) + 0.1) - ref
            count = np.floor(np.abs(diff) / threshold).astype(int)
            ys, xs = np.nonzero(count)
            if len(ys) == 0:
                continue
            n = count[ys, xs]
            ey, ex = np.repeat(ys, n), np.repeat(xs, n)
            rank = np.concatenate([np.arange(m) for m in n])
            per = np.repeat(n, n)
            t = (step - 1) * dt + ((rank + rng.uniform(0, 1, len(rank))) / per * dt).astype(np.int64)
            polarity = (diff[ey, ex] > 0).astype(np.int64)
            chunk = np.empty(len(ey), dtype=EVENT_DTYPE)
            chunk["x"], chunk["y"], chunk["t"], chunk["p"] = ex, ey, t, polarity
            chunks.append(chunk)
            ref[ys, xs] += np.sign(diff[ys, xs]) * n * threshold
    events = np.concatenate(chunks) if chunks else np.empty(0, dtype=EVENT_DTYPE)
    return events[np.argsort(events["t"], kind="stable")]


def frames_of(streams: Sequence[np.ndarray], steps: int, sensor: tuple[int, int, int] = NMNIST_SENSOR) -> np.ndarray:
    """``(N, T, P, H, W)`` float32 frames of several streams."""
    return np.stack([to_frames(s, steps, sensor) for s in streams])
