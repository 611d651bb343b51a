"""Single-cell images of six nuclear staining patterns, like the public HEp-2 immunofluorescence sets: a harder
embedded benchmark, each cell a pure function of (seed, class, index).

One cell per image, 16-bit, one channel (the antibody stain; a second, DAPI-like nuclear channel on request):

    homogeneous  the whole nucleus evenly stained, with a little chromatin texture
    speckled     many fine speckles over the nucleoplasm, the nucleoli spared
    nucleolar    a few bright nucleoli on a dim nucleoplasm
    centromere   many small, discrete bright dots all over the nucleus
    membrane     a bright rim along the nuclear envelope
    golgi        a dim nucleus with a bright granular crescent beside it in the cytoplasm (the rare class)

Nuclei are wobbly ellipses of varied size, shape and brightness (dim "intermediate" cells as in the public
sets), on a varied background and faint cytoplasm, blurred by a varied point-spread function and imaged
with shot and read noise. Every class but homogeneous shows its pattern with a `strength` drawn per cell: at
the weak end the pattern fades into the shared homogeneous fill, and blur merges speckles into texture and
dots into blobs, so the classes overlap a little and no classifier reaches 100%.

The workflow writes a class's cells in blocks of BLOCK (one job each); `write_dataset` writes the same cells
from Python alone as a class-folder dataset.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError

CLASSES = ("homogeneous", "speckled", "nucleolar", "centromere", "membrane", "golgi")
RARE_CLASS = "golgi"  # the rarest class of the public sets too
RARE_FRACTION = 1 / 3
SIZE = 72  # px, a cell and a margin of its cytoplasm, like the public crops
BLOCK = 100  # cells one workflow job writes
FOLDER = "patterns"  # results/demo/<dataset>/patterns/<class>/cell_<index>.tif
_STREAM = 24  # keeps these generators apart from the field demo's

# Per class, the range of the pattern's weight against the homogeneous fill (0: homogeneous).
_WEIGHT = {
    "homogeneous": (0.0, 0.0),
    "speckled": (0.12, 0.85),
    "nucleolar": (0.2, 0.85),
    "centromere": (0.5, 0.95),
    "membrane": (0.03, 0.8),
    "golgi": (0.35, 0.95),
}
_SIGNAL_E = 900.0  # median nuclear photo-electrons of a bright ("positive") cell
_INTERMEDIATE = 0.4  # share of dim ("intermediate") cells
_READ_NOISE_E = 2.0
_OFFSET = 100.0  # ADU


@dataclass(frozen=True)
class PatternCell:
    image: np.ndarray  # uint16 (Y, X), or (2, Y, X) with the nuclear channel second
    rho: np.ndarray  # float32 (Y, X): distance from the nucleus centre over the envelope's, 1 on the envelope
    strength: float  # weight of the class's pattern against the homogeneous fill (0 for homogeneous)

    @property
    def nucleus(self):
        return self.rho <= 1


def render_cell(cls: str, *, seed: int, index: int, size: int = SIZE, channels: int = 1) -> PatternCell:
    """Render cell `index` of class `cls`; a pure function of its arguments, so reruns are byte-identical."""
    _require(cls)
    if channels not in (1, 2):
        raise InputError(f"demo patterns: channels must be 1 or 2, not {channels}")
    rng = np.random.default_rng(np.random.SeedSequence([_STREAM, seed, CLASSES.index(cls), index]))
    g = _geometry(rng, size)
    inside = _soft_inside(g["rho"], g["a"])
    chromatin = _texture(rng, size, 1.2)
    # Brighter in the middle, or a little towards the envelope (peripheral chromatin), with chromatin texture.
    profile = 1 + rng.uniform(-0.25, 0.15) * (np.minimum(g["rho"], 1) ** 2 - 0.5)
    fill = profile * np.clip(1 + rng.uniform(0.04, 0.2) * chromatin, 0, None)
    nucleoli = _nucleoli(rng, g, rng.integers(1, 5), sigma=(1.3, 2.6))  # every nucleus has some; max 1
    homogeneous = fill * inside * (1 - rng.uniform(0.0, 0.35) * nucleoli)

    low, high = _WEIGHT[cls]
    weight = float(rng.uniform(low, high))
    pattern = _PATTERNS[cls](rng, g, inside, nucleoli) if weight > 0 else 0.0
    signal = (1 - weight) * homogeneous + weight * pattern

    # Faint cytoplasm (non-specific staining) out to the cell's edge.
    cell = _soft_inside(g["rho"] / rng.uniform(1.5, 2.1), g["a"] * 2)
    cytoplasm = rng.uniform(0.01, 0.07) * cell * (1 - inside) * np.clip(1 + 0.3 * _texture(rng, size, 3.0), 0, None)
    brightness = _SIGNAL_E * rng.lognormal(0, 0.35) * (rng.uniform(0.25, 0.5) if rng.random() < _INTERMEDIATE else 1)
    background = rng.uniform(5, 40) * (1 + rng.uniform(0, 0.3) * _ramp(rng, size))
    blur = rng.uniform(0.6, 1.7)
    gain = rng.uniform(1.5, 3.0)  # ADU per photo-electron
    dna_brightness = _SIGNAL_E * rng.lognormal(0, 0.3)
    image = _camera(rng, _blur(brightness * (signal + cytoplasm), blur) + background, gain)
    if channels == 2:  # DAPI-like: the whole nucleus, chromatin texture, nucleoli dark; channel 0 stays as with 1
        dna = inside * (0.85 + 0.15 * chromatin) * (1 - 0.5 * nucleoli)
        image = np.stack([image, _camera(rng, _blur(dna_brightness * dna, blur) + background, gain)])
    return PatternCell(image, g["rho"].astype(np.float32), weight)


def class_counts(cells_per_class: int, rare_fraction: float = RARE_FRACTION, rare_class: str = RARE_CLASS) -> dict:
    """Cells per class: `cells_per_class` each, the rare class `rare_fraction` as many (at least one)."""
    _require(rare_class)
    if cells_per_class < 1 or not 0 < rare_fraction <= 1:
        raise InputError(
            f"demo patterns: need cells_per_class >= 1 and 0 < rare_fraction <= 1, "
            f"got {cells_per_class} and {rare_fraction}"
        )
    rare = max(1, round(cells_per_class * rare_fraction))
    return {cls: rare if cls == rare_class else cells_per_class for cls in CLASSES}


def stem(index: int) -> str:
    """File stem of cell `index` of a class: cell_00217 (block 2, cell 17 of the block)."""
    return f"cell_{index:05d}"


def cell_names(cells_per_class: int, rare_fraction: float = RARE_FRACTION, rare_class: str = RARE_CLASS):
    """[(class, stem), ...] of a dataset, known before any file exists so jobs can be planned."""
    counts = class_counts(cells_per_class, rare_fraction, rare_class)
    return [(cls, stem(i)) for cls in CLASSES for i in range(counts[cls])]


def samples(root, spec):
    """The samples of a workflow demo dataset (a validated `demo_cells` entry), under root/patterns/<class>/."""
    from cellclass.io import datasets

    names = cell_names(spec["cells_per_class"], spec["rare_fraction"], spec["rare_class"])
    return datasets.from_demo(root, names, images=FOLDER)


def block_settings(spec):
    """What a block's pixels depend on (seed, size, channels): the counts are left out, so adding cells to a
    dataset never rewrites a block already written."""
    return {key: spec[key] for key in ("seed", "size", "channels")}


def write_cell(path, cls, index, *, seed, size=SIZE, channels=1):
    """Render one cell and write it as a 16-bit TIFF, atomically."""
    image = render_cell(cls, seed=seed, index=index, size=size, channels=channels).image
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, imagej=True, metadata={"axes": "YX" if image.ndim == 2 else "CYX"})
    return Path(path)


def write_block(paths, *, cls, block, seed, size=SIZE, channels=1):
    """Write cells block * BLOCK ... block * BLOCK + BLOCK - 1 of class `cls` to `paths`, in order (one job).

    The last block of a class may hold cells past the dataset's count; no sample uses them, and adding cells
    later never rewrites the ones before.
    """
    if len(paths) != BLOCK:
        raise InputError(f"demo patterns: a block is {BLOCK} cells, got {len(paths)} paths")
    for i, path in enumerate(paths):
        index = block * BLOCK + i
        if Path(path).stem != stem(index):
            raise InputError(f"demo patterns: {path} should be named {stem(index)}.tif (cell {index} of {cls})")
        write_cell(path, cls, index, seed=seed, size=size, channels=channels)
    return [Path(p) for p in paths]


def write_dataset(
    folder, cells_per_class, rare_class_fraction=RARE_FRACTION, seed=0, *, size=SIZE, channels=1, rare_class=RARE_CLASS
):
    """Write folder/<class>/cell_<index>.tif, the layout a dataset's `path:` reads; return the paths.

    The cells are those the workflow writes for the same seed, size and channels.
    """
    folder = Path(folder)
    return [
        write_cell(
            folder / cls / f"{name}.tif", cls, int(name.removeprefix("cell_")), seed=seed, size=size, channels=channels
        )
        for cls, name in cell_names(cells_per_class, rare_class_fraction, rare_class)
    ]


# The class patterns: each a field over the image, in units of the homogeneous fill (mean about 1 in the nucleus).


def _speckled(rng, g, inside, nucleoli):
    count = rng.integers(150, 350)
    ys, xs = _points_in(rng, g, count, 0.97)
    spots = _spots(g, ys, xs, rng.uniform(0.5, 0.85, count), rng.uniform(0.5, 1.5, count))
    return _unit_mean(spots * inside * (1 - 0.9 * nucleoli), inside)


def _nucleolar(rng, g, inside, nucleoli):
    count = rng.choice([1, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8, 10, 12])  # a few, sometimes many like centromeres
    bright = _nucleoli(rng, g, count, sigma=(0.9, 2.6), reach=0.8)
    count = rng.integers(40, 120)  # a faint speckled nucleoplasm around them
    ys, xs = _points_in(rng, g, count, 0.95)
    haze = _spots(g, ys, xs, np.full(count, 0.7), np.ones(count))
    haze = rng.uniform(0, 0.15) * _unit_mean(haze * inside, inside)
    return _unit_mean(bright, inside) + haze


def _centromere(rng, g, inside, nucleoli):
    count = rng.integers(10, 51)
    ys, xs = _points_in(rng, g, count, 0.93, spread=True)
    return _unit_mean(_spots(g, ys, xs, rng.uniform(0.7, 1.2, count), rng.uniform(0.7, 1.3, count)), inside)


def _membrane(rng, g, inside, nucleoli):
    centre, width = rng.uniform(0.86, 0.96), rng.uniform(0.05, 0.1)
    rim = np.exp(-0.5 * ((g["rho"] - centre) / width) ** 2)
    beads = np.clip(1 + rng.uniform(0.2, 0.6) * _texture(rng, g["size"], 1.0), 0, None)  # a punctate rim
    return _unit_mean(rim * beads, inside)


def _golgi(rng, g, inside, nucleoli):
    """Granules along an arc of the cytoplasm next to the nucleus, with a smooth band under them."""
    direction, half = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.3)
    radius, thickness = rng.uniform(1.12, 1.35), rng.uniform(0.08, 0.2)
    band = np.exp(-0.5 * ((g["rho"] - radius) / thickness) ** 2)
    offset = np.angle(np.exp(1j * (g["theta"] - direction)))
    band *= np.exp(-0.5 * (offset / half) ** 4)
    count = rng.integers(6, 21)
    angles = direction + rng.uniform(-half, half, count)
    radii = radius + rng.normal(0, thickness, count)
    ys, xs = _polar_to_pixels(g, angles, radii)
    granules = _spots(g, ys, xs, rng.uniform(1.0, 2.2, count), rng.uniform(0.5, 1.5, count))
    mass = rng.uniform(0.35, 1.0) * inside.sum()  # the crescent's photons, as a share of a homogeneous nucleus
    crescent = 0.4 * band / band.sum() + 0.6 * granules / granules.sum()
    return mass * crescent


_PATTERNS = {
    "speckled": _speckled,
    "nucleolar": _nucleolar,
    "centromere": _centromere,
    "membrane": _membrane,
    "golgi": _golgi,
}


def _geometry(rng, size):
    """A wobbly ellipse near the centre: its normalised radius rho (1 on the envelope) and angle per pixel."""
    scale = size / SIZE
    cy, cx = size / 2 + rng.uniform(-3, 3, 2) * scale
    a = rng.uniform(12.5, 20.5) * scale
    b = a * rng.uniform(0.68, 1.0)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    u = (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    v = (yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle)
    theta = np.arctan2(v / b, u / a)
    k = np.arange(2, 6)[:, None, None]
    amplitude = (rng.uniform(0, 1, 4) * [0.06, 0.04, 0.03, 0.02])[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, 4)[:, None, None]
    wobble = 1 + (amplitude * np.cos(k * theta + phase)).sum(axis=0)
    rho = np.hypot(u / a, v / b) / wobble
    return {
        "size": size,
        "cy": cy,
        "cx": cx,
        "a": a,
        "b": b,
        "angle": angle,
        "theta": theta,
        "rho": rho,
        "wobble": (amplitude[:, 0, 0], phase[:, 0, 0]),
        "yy": yy,
        "xx": xx,
    }


def _polar_to_pixels(g, angles, radii):
    """Pixel (y, x) of points at normalised radius `radii` and ellipse angle `angles` (inverse of _geometry)."""
    amplitude, phase = g["wobble"]
    wobble = 1 + (amplitude[:, None] * np.cos(np.arange(2, 6)[:, None] * angles[None] + phase[:, None])).sum(0)
    u = radii * wobble * g["a"] * np.cos(angles)
    v = radii * wobble * g["b"] * np.sin(angles)
    s, c = np.sin(g["angle"]), np.cos(g["angle"])
    return g["cy"] + u * s + v * c, g["cx"] + u * c - v * s


def _points_in(rng, g, count, reach, spread=False):
    """`count` points inside rho < reach, uniform over the area; `spread` keeps them apart (centromeres)."""
    ys, xs = [], []
    tries = 0
    while len(ys) < count and tries < 50 * count:
        tries += 1
        angle = rng.uniform(0, 2 * np.pi)
        radius = reach * np.sqrt(rng.uniform())
        y, x = _polar_to_pixels(g, np.array([angle]), np.array([radius]))
        if spread and any(math.hypot(y[0] - py, x[0] - px) < 3.0 for py, px in zip(ys, xs)):
            continue
        ys.append(y[0])
        xs.append(x[0])
    return np.array(ys), np.array(xs)


def _nucleoli(rng, g, count, sigma, reach=0.65):
    """`count` nucleoli in the inner nucleus, each one to three overlapping blobs; scaled to a peak of 1."""
    ys, xs = _points_in(rng, g, count, reach)
    blobs_y, blobs_x, sigmas = [], [], []
    for y, x in zip(ys, xs):
        parts = rng.integers(1, 4)
        size = rng.uniform(*sigma)
        blobs_y += list(y + rng.normal(0, 0.6 * size, parts))
        blobs_x += list(x + rng.normal(0, 0.6 * size, parts))
        sigmas += list(size * rng.uniform(0.6, 1.0, parts))
    field = _spots(g, np.array(blobs_y), np.array(blobs_x), np.array(sigmas), rng.uniform(0.7, 1.0, len(sigmas)))
    return field / max(field.max(), 1e-9)


def _spots(g, ys, xs, sigmas, amplitudes):
    """Sum of Gaussian spots with the given peak amplitudes."""
    field = np.zeros((g["size"], g["size"]))
    for y, x, sigma, amplitude in zip(ys, xs, sigmas, amplitudes):
        reach = int(np.ceil(4 * sigma))
        y0, y1 = max(int(y) - reach, 0), min(int(y) + reach + 2, g["size"])
        x0, x1 = max(int(x) - reach, 0), min(int(x) + reach + 2, g["size"])
        if y0 >= y1 or x0 >= x1:
            continue
        r2 = (g["yy"][y0:y1, x0:x1] - y) ** 2 + (g["xx"][y0:y1, x0:x1] - x) ** 2
        field[y0:y1, x0:x1] += amplitude * np.exp(-r2 / (2 * sigma**2))
    return field


def _unit_mean(field, inside):
    return field / max(float((field * inside).sum() / inside.sum()), 1e-9)


def _soft_inside(rho, radius_px):
    """1 inside rho < 1, 0 outside, with an edge about a pixel wide."""
    return 1 / (1 + np.exp(np.clip((rho - 1) * radius_px / 0.6, -50, 50)))


def _blur(field, sigma, **options):
    # scipy.ndimage is imported here: every Snakemake start imports this module (to name the demo's files)
    # and only the demo jobs draw images.
    from scipy import ndimage

    return ndimage.gaussian_filter(field, sigma, **options)


def _texture(rng, size, sigma):
    field = _blur(rng.standard_normal((size, size)), sigma)
    return field / field.std()


def _ramp(rng, size):
    """A linear gradient across the image in a random direction, from -1 to 1 (uneven illumination)."""
    direction = rng.uniform(0, 2 * np.pi)
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) / ((size - 1) / 2)
    return (yy * np.sin(direction) + xx * np.cos(direction)) / np.sqrt(2)


def _camera(rng, photons, gain):
    electrons = rng.poisson(np.clip(photons, 0, None)) + rng.normal(0, _READ_NOISE_E, photons.shape)
    return np.clip(np.rint(_OFFSET + gain * electrons), 0, 65535).astype(np.uint16)


def _require(cls):
    if cls not in CLASSES:
        raise InputError(f"unknown demo pattern class {cls!r}: expected one of {', '.join(CLASSES)}")


def contact_sheet(path, *, seed=0, per_class=8, size=SIZE, first=0):
    """A PNG of `per_class` cells of each class, a row per class, each cell stretched between its 0.5th and
    99.9th percentiles as the workflow normalises it; for people to judge how the patterns look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellclass.io import plotting

    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(per_class * 1.1, len(CLASSES) * 1.15))
    for row, cls in zip(axes, CLASSES):
        for column, ax in enumerate(row):
            pixels = render_cell(cls, seed=seed, index=first + column, size=size).image.astype(np.float32)
            low, high = np.percentile(pixels, [0.5, 99.9])
            ax.imshow(np.clip((pixels - low) / max(high - low, 1), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(cls, fontsize=8)
    fig.subplots_adjust(left=0.3 / fig.get_figwidth(), right=0.99, top=0.99, bottom=0.01, wspace=0.04, hspace=0.04)
    plotting.save(fig, path)
    plt.close(fig)
    return Path(path)
