"""Image quality: what each raw image shows before any network sees it, and how far it lies from a set's images.

Every image, training or new, is measured once, from its raw pixels before
normalisation, as it is tiled: focus, saturation, intensity percentiles,
background and signal-to-background per channel, the correlation of its first
two channels, and for fields the objects found, their median area and density.
A set of images gives a Reference: per measure, its median and a robust spread
(1.4826 x the median absolute deviation, the standard deviation for normal
data, floored so that near-identical images do not make every small change an
outlier). An image whose robust distance on any measure exceeds LIMIT spreads
is unlike the set, and the measures that moved are named.
"""

import functools
import math

import numpy as np
import pandas as pd

LIMIT = 5.0  # robust z beyond which an image is unlike a set: 1 in 1.7 million for a normal measure
MIN_IMAGES = 10  # fewer images cannot place a median and a spread (the flag is turned off, with a warning)
SAMPLES = 2**15  # pixels sampled for percentiles, background and correlation: exact enough, fast on any field
FOCUS_SIDE = 512  # the focus spectrum is taken on a central window at most this wide

# Per measure kind: compared on a log scale (ratios of intensity, area, count), and the smallest spread allowed.
# Floors: 5% in intensity, 10% in area or density, 0.15 in spectral slope, 0.5% of pixels saturated, 0.05 in r.
KINDS = {
    "focus": (False, 0.15),
    "saturated": (False, 0.005),
    "p01": (True, 0.05),
    "p50": (True, 0.05),
    "p99": (True, 0.05),
    "background": (True, 0.05),
    "signal_to_background": (True, 0.05),
    "correlation": (False, 0.05),
    "objects": (True, 0.1),
    "object_area": (True, 0.1),
    "density": (True, 0.1),
}
WORDS = {
    "focus": "focus (power-spectrum slope)",
    "saturated": "saturated share",
    "p01": "1st percentile",
    "p50": "median intensity",
    "p99": "99th percentile",
    "background": "background level",
    "signal_to_background": "signal-to-background",
    "correlation": "correlation of channels 0 and 1",
    "objects": "objects found",
    "object_area": "median object area",
    "density": "object density",
    "pixel_size": "pixel size",
}


def measure(pixels, bit_depth, objects=None, pixel_size=None):
    """An image's measures (name -> float, NaN where one cannot be computed) and a note naming those.

    `pixels`: (Y, X, C) raw values; `bit_depth`: their significant bits (None: float data, full scale 1);
    `objects`: a boolean foreground mask or a label image of the field (None: a single-cell image, which has no
    objects to count); `pixel_size`: µm per pixel where the metadata gives it."""
    full = float(2**bit_depth - 1) if bit_depth else 1.0
    values = {}
    step = max(1, math.isqrt(pixels.shape[0] * pixels.shape[1] // SAMPLES))  # every step-th row and column
    sampled = pixels[::step, ::step].reshape(-1, pixels.shape[-1]).astype(np.float32) / full
    inside = None if objects is None else np.asarray(objects)[::step, ::step].ravel() > 0
    for c in range(pixels.shape[-1]):
        found = channel_measures(sampled[:, c], inside, bit_depth is not None)
        found["focus"] = spectral_slope(pixels[..., c])
        values.update({f"{k}_c{c}": found[k] for k in sorted(found, key=ORDER.index)})
    if pixels.shape[-1] > 1:
        values["correlation"] = correlation(sampled)
    if objects is not None:
        values.update(object_measures(np.asarray(objects)))
    # A field without objects has no median object area; that is what it shows, not a failed measure.
    missing = [
        k for k, v in values.items() if not np.isfinite(v) and not (k == "object_area" and not values["objects"])
    ]
    values = {k: float(v) for k, v in values.items()}  # plain floats: the tile store keeps them as JSON
    values["pixel_size"] = math.nan if pixel_size is None else float(pixel_size)
    return values, (f"cannot be computed: {', '.join(missing)}" if missing else "")


ORDER = ["focus", "saturated", "p01", "p50", "p99", "background", "signal_to_background"]


def channel_measures(sample, inside, integer):
    """One channel's intensity measures from a sample of its pixels (as a fraction of full scale); `inside`: which
    sampled pixels are objects (None: no objects); `integer`: full scale is a ceiling."""
    finite = np.isfinite(sample)
    sample, inside = sample[finite], None if inside is None else inside[finite]
    if not sample.size:
        return dict.fromkeys(ORDER[1:] if integer else ORDER[2:], math.nan)
    p01, p10, p50, p90, p99 = np.percentile(sample, [1, 10, 50, 90, 99])
    background, signal = p10, p90  # no objects, or a single-cell image: the darkest and brightest tenth stand in
    if inside is not None and inside.any() and not inside.all():
        background, signal = float(np.median(sample[~inside])), float(np.median(sample[inside]))
    found = {
        "p01": p01,
        "p50": p50,
        "p99": p99,
        "background": background,
        "signal_to_background": signal / max(background, 1e-6),
    }
    if integer:  # float data has no ceiling to saturate at
        found["saturated"] = float((sample >= 1.0).mean())
    return found


def spectral_slope(channel):
    """Slope of the radially averaged power spectrum on log-log axes, between 1/20 and 2/5 cycles per pixel:
    a sharp image keeps its fine detail (a flatter slope); blur takes it away (steeper). Independent of
    brightness; NaN for an image without spread. Taken on a central window of FOCUS_SIDE px: on the demo's
    1024-px fields a 512-px window spreads a third as much from field to field as a 256-px one."""
    from scipy import fft

    height, width = channel.shape
    top, left = max(0, (height - FOCUS_SIDE) // 2), max(0, (width - FOCUS_SIDE) // 2)
    window = channel[top : top + FOCUS_SIDE, left : left + FOCUS_SIDE].astype(np.float32)
    if min(window.shape) < 16 or not np.isfinite(window).any():
        return math.nan
    window = np.nan_to_num(window, nan=float(np.nanmean(window)))
    window -= window.mean()
    if not window.any():
        return math.nan
    taper, which, counts, freq = _spectrum_bins(window.shape)
    power = np.abs(fft.rfft2(window * taper)) ** 2  # float32: twice as fast, and precise enough for a slope
    mean_power = np.bincount(which, power.ravel().astype(np.float64), minlength=len(counts) + 2)[1:-1][counts > 0]
    mean_power /= counts[counts > 0]
    if len(freq) < 3 or (mean_power <= 0).any():
        return math.nan
    return float(np.polyfit(np.log(freq), np.log(mean_power), 1)[0])


@functools.lru_cache(maxsize=8)
def _spectrum_bins(shape):
    """Per window shape: its taper (edges would add 1/f^2 power), each frequency's log-spaced bin (0 and the
    last: outside the band), pixels per bin and the bins' mean frequencies."""
    taper = np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)
    radius = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :]).ravel()
    edges = np.geomspace(0.05, 0.4, 13)
    which = np.digitize(radius, edges)
    counts = np.bincount(which, minlength=len(edges) + 1)[1:-1]
    freq = np.bincount(which, radius, minlength=len(edges) + 1)[1:-1][counts > 0] / counts[counts > 0]
    return taper, which, counts, freq


def correlation(sampled):
    """Pearson correlation of the first two channels' sampled pixels (rows): one stain copied into both is 1."""
    a, b = sampled[:, 0], sampled[:, 1]
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    if len(a) < 2 or a.min() == a.max() or b.min() == b.max():
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def object_measures(objects):
    """Objects of a field: their count, median area (px) and density (objects per 10^6 px). A mask's connected
    regions count as objects (touching cells merge, alike in every image), found at a quarter of the resolution
    (cells span hundreds of pixels; it is 10 times faster); a label image's labels are its objects."""
    from scipy import ndimage

    if objects.dtype == bool:
        labels, scale = ndimage.label(objects[::4, ::4])[0], 16
    else:
        labels, scale = objects, 1
    areas = np.bincount(labels.ravel())[1:] * scale
    areas = areas[areas >= 10]  # specks of a few pixels are noise, not objects
    pixels = float(objects.shape[0] * objects.shape[1])
    return {
        "objects": float(len(areas)),
        "object_area": float(np.median(areas)) if len(areas) else math.nan,
        "density": len(areas) / pixels * 1e6,
    }


def comparable(table):
    """The measure columns of a QC table that are compared (pixel size is reported, compared only when given)."""
    return [
        c
        for c in table.columns
        if c.split("_c")[0] in KINDS or c in KINDS or (c == "pixel_size" and table[c].notna().any())
    ]


def _kind(name):
    return name if name in KINDS else name.rsplit("_c", 1)[0]


def is_logged(name):
    """Whether a measure is compared on a log scale (a ratio of intensities, areas or counts)."""
    return KINDS.get(_kind(name), (True, 0.05))[0]


def _scaled(values, name):
    values = np.asarray(values, float)
    return np.log(np.where(values > 0, values, np.nan)) if is_logged(name) else values


class Fit:
    """One set of images' medians and robust spreads per measure, on the compared scale."""

    def __init__(self, table, measures):
        self.center, self.scale = {}, {}
        for name in measures:
            values = _scaled(table[name], name)
            values = values[np.isfinite(values)]
            if len(values):
                self.center[name] = center = float(np.median(values))
                floor = KINDS.get(_kind(name), (True, 0.05))[1]  # pixel size: 5%
                self.scale[name] = max(1.4826 * float(np.median(np.abs(values - center))), floor)

    def distances(self, table):
        """Robust z of every image (row) on every measure (column): NaN where it or the fit has none."""
        return pd.DataFrame(
            {
                name: (_scaled(table[name], name) - self.center[name]) / self.scale[name]
                for name in self.center
                if name in table
            },
            index=table.index,
        )


class Reference:
    """A training set's images' measures. Classes may differ in what the images show (a brighter phenotype, other
    cells), so each class with MIN_IMAGES images has its own Fit, and an image is placed by the class it lies
    nearest (smallest largest distance); classes with fewer images are covered by a Fit of the whole set."""

    def __init__(self, table):
        self.measures = comparable(table)
        self.images = len(table)
        sizes = table["class"].value_counts() if "class" in table else pd.Series(dtype=int)
        own = [c for c, n in sizes.items() if n >= MIN_IMAGES] if len(sizes) > 1 else []
        self.fits = {c: Fit(table[table["class"] == c], self.measures) for c in own}
        if len(own) < 2 or len(own) < len(sizes):  # a class too small to fit alone is judged with the whole set
            self.fits["all"] = Fit(table, self.measures)

    @property
    def usable(self):
        return self.images >= MIN_IMAGES

    def distances(self, table, own_class=False):
        """Robust z of every image on every measure, from its nearest fit (`own_class`: its own class's fit where
        it has one, for a training set's own images)."""
        names = list(self.fits)
        columns = [m for m in self.measures if m in table]
        if not columns or not len(table):
            return pd.DataFrame(index=table.index, columns=columns, dtype=float)
        # (fits, images, measures), NaN where a fit lacks a measure; a prediction set may hold 10^5 images.
        z = np.stack([fit.distances(table).reindex(columns=columns).to_numpy(float) for fit in self.fits.values()])
        largest = np.where(np.isnan(z).all(axis=2), np.inf, np.abs(np.nan_to_num(z, nan=0.0)).max(axis=2))
        nearest = largest.argmin(axis=0)
        if own_class and "class" in table:
            own = table["class"].map({c: i for i, c in enumerate(names)})
            nearest = np.where(own.notna(), own.fillna(0).astype(int), nearest)
        return pd.DataFrame(z[nearest, np.arange(len(table))], index=table.index, columns=columns)

    def judge(self, table, own_class=False):
        """Per image: its largest robust distance, and the measures beyond LIMIT in words ('' where none)."""
        z = self.distances(table, own_class)
        largest = z.abs().max(axis=1, skipna=True)
        named = pd.Series("", index=table.index, dtype=object)
        for i, row in z[largest > LIMIT].iterrows():  # words only for the few images beyond the limit
            named[i] = "; ".join(
                f"{describe(name)} {'high' if value > 0 else 'low'} (z {value:+.1f})"
                for name, value in sorted(row.dropna().items(), key=lambda kv: -abs(kv[1]))
                if abs(value) > LIMIT
            )
        return pd.DataFrame({"qc_distance": largest, "unlike": named}, index=table.index)


def describe(name):
    """A measure in words: 'focus (power-spectrum slope), channel 1'."""
    kind = _kind(name)
    channel = name[len(kind) + 2 :] if name != kind else ""
    return WORDS.get(kind, kind) + (f", channel {channel}" if channel else "")


def table_of(tilesets):
    """One row per image of `tilesets` (their meta['qc']): image, group, class, every measure and its note."""
    rows = []
    for t in tilesets:
        qc = t.meta.get("qc") or {}
        rows.append(
            {
                "dataset": t.meta.get("dataset", ""),
                "image": t.meta["sample"],
                "group": t.meta["group"],
                "class": t.meta["class"],
                "files": ";".join(t.meta["files"]),
                **qc.get("values", {}),
                "qc_note": qc.get("note", "") if "values" in qc else (t.meta.get("skipped") or "not measured"),
            }
        )
    table = pd.DataFrame(rows)
    measures = [c for c in table.columns if c not in ("dataset", "image", "group", "class", "files", "qc_note")]
    return table.astype({c: float for c in measures})


def own_outliers(table):
    """A training set's images unlike the rest of their own set (the same Reference, fitted on all of them):
    the table with qc_distance and unlike columns; unlike is '' for all when the set is too small to judge."""
    reference = Reference(table)
    if not reference.usable:
        return table.assign(qc_distance=np.nan, unlike="")
    return table.join(reference.judge(table, own_class=True))


def write_table(table, path):
    """A QC table as Parquet, atomically."""
    from cellclass.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
