"""Read raw microscopy images (TIFF, OME-TIFF, ImageJ hyperstacks, PNG, JPEG, OME-Zarr) as (Y, X, C) arrays.

Pixel values stay as stored: normalisation needs the camera's bit depth, which
is read here from the file rather than guessed from the values.
"""

import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

from cellclass.io.errors import InputError

TIFF_SUFFIXES = {".tif", ".tiff"}
PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg"}
# tifffile axis letters: C channel and S sample (RGB) are channels, Y and X are
# spatial, every other axis (Z, T, I, Q, ...) is a plane.
KEPT_AXES = "CSYX"
PILLOW_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "RGB", "RGBA"}


@dataclass(frozen=True)
class RawImage:
    """One field's pixels as stored, with what normalisation needs to know about them."""

    pixels: np.ndarray  # (Y, X, C), original dtype kept (no normalisation here)
    bit_depth: int | None  # significant bits for integer data (8, 12, 16, ...); None for float data
    paths: tuple[Path, ...]  # the file(s) it came from


def read_image(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    channels: Sequence[int] | None = None,
    plane: int | str = "max",
    bit_depth: int | str = "auto",
    planes: int = 1,
    axes: str | None = None,
) -> RawImage:
    """Read one field from one file, or from one file per channel stacked in the given order.

    plane: "max" projects z-stacks/time series, an int picks one plane (counted
    over all plane axes in file order). channels: indices into the stacked
    channels (None = all). bit_depth: "auto" reads it from the file; an int
    overrides it, e.g. 12 for 12-bit camera data saved in 16-bit files.
    planes: files per channel, each a z plane (`paths` holds channel 1's planes,
    then channel 2's, ...); "max" projects them, an int picks that plane's file.
    axes: a TIFF's axes (tifffile letters, e.g. "CYX"), overriding what the file says.
    """
    paths = (paths,) if isinstance(paths, (str, os.PathLike)) else tuple(paths)
    if not paths:
        raise InputError("no image file given")
    paths = tuple(Path(p) for p in paths)
    if len(paths) % planes:
        raise InputError(
            f"image {' + '.join(map(str, paths))}: {len(paths)} files are not {planes} plane(s) per channel"
        )
    read = paths
    if planes > 1 and plane != "max":
        if not 0 <= plane < planes:
            raise InputError(
                f"image {' + '.join(map(str, paths))}: plane {plane} does not exist; it has {planes} "
                f"plane files per channel, numbered 0 to {planes - 1}"
            )
        read, planes, plane = paths[plane::planes], 1, "max"  # that plane's file of each channel
    images = [_read_file(path, plane, bit_depth, axes) for path in read]
    first, (pixels, _) = read[0], images[0]
    for path, (other, _) in zip(read[1:], images[1:]):
        if other.shape[:2] != pixels.shape[:2]:
            raise InputError(
                f"image {path} is {_size(other)} pixels but {first} is {_size(pixels)}; "
                "the channel files of one field must have the same size"
            )
        if other.dtype != pixels.dtype:
            raise InputError(
                f"image {path} has {_kind(other)} pixels but {first} has {_kind(pixels)}; "
                "the channel files of one field must have the same pixel type"
            )
    if planes > 1:  # each channel's plane files projected as one stack's planes are
        images = [
            (
                np.fmax.reduce([image for image, _ in images[i : i + planes]]),
                max(depth or 0 for _, depth in images[i : i + planes]) or None,
            )
            for i in range(0, len(images), planes)
        ]
    if len(images) > 1:
        pixels = np.concatenate([image for image, _ in images], axis=2)
    if channels is not None:
        count = pixels.shape[2]
        for channel in channels:
            if not 0 <= channel < count:
                raise InputError(
                    f"image {' + '.join(map(str, paths))}: channel {channel} does not exist; "
                    f"it has {count} channel(s), numbered 0 to {count - 1}"
                )
        pixels = pixels[..., list(channels)]
    bits = None if pixels.dtype.kind == "f" else max(depth for _, depth in images)
    return RawImage(pixels, bits, paths)


def _size(pixels):
    return f"{pixels.shape[0]} x {pixels.shape[1]} (height x width)"


def _kind(pixels):
    return f"{pixels.dtype.itemsize * 8}-bit {'float' if pixels.dtype.kind == 'f' else 'integer'}"


def check_axes(axes, where="prepare.axes"):
    """`axes` as tifffile letters, upper case: each once, Y and X among them; an error naming `where` if not."""
    upper = str(axes).upper()
    if not upper.isalpha() or len(set(upper)) < len(upper) or not {"Y", "X"} <= set(upper):
        raise InputError(
            f"{where}: '{axes}' is no axes order; give each axis once as a letter, with Y and X among "
            "them (C channel, Z plane, T time), e.g. CYX, YXC or ZCYX"
        )
    return upper


def _read_file(path, plane, bit_depth, axes=None):
    """One file's (Y, X, C) pixels, checked, and its bit depth; `axes` overrides a TIFF's own."""
    if is_ome_zarr_image(path):
        pixels, depth = _read_ome_zarr(path, plane)
        return _check_values(path, pixels, depth, bit_depth)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"image {path}: file not found") from None
    if path.is_dir():
        raise InputError(f"image {path}: is a folder, not an image file")
    if size == 0:
        raise InputError(f"image {path}: the file is empty (0 bytes); it was probably not saved or copied completely")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        pixels, depth = _read_tiff(path, plane, axes)
    elif suffix in PILLOW_SUFFIXES:
        pixels, depth = _read_pillow(path, plane)
    else:
        raise InputError(
            f"image {path}: unsupported file type '{suffix or 'no extension'}'; use TIFF, PNG or JPEG "
            "(export other microscope formats to TIFF or OME-TIFF, e.g. with Fiji)"
        )
    return _check_values(path, pixels, depth, bit_depth)


def is_ome_zarr_image(path):
    """Whether `path` is an image inside an OME-Zarr store (e.g. plate.zarr/A/1/0, a field of a well)."""
    return any(part.lower().endswith(".zarr") for part in Path(path).parts[:-1])


def _read_ome_zarr(path, plane):
    """The full-resolution level of an OME-Zarr (NGFF) image as (Y, X, C), by the ome-zarr reader; its bit depth
    is its integer type's (NGFF records no camera bit depth)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(str(path)) if Path(path).is_dir() else None
    if location is None or "multiscales" not in location.root_attrs:
        raise InputError(f"image {path}: not an OME-Zarr image (no multiscales metadata there)")
    node = next(Reader(location)())
    axes = "".join(
        a["name"] if isinstance(a, dict) else a for a in node.metadata.get("axes", "tczyx"[-node.data[0].ndim :])
    )
    # NGFF axes are t, c, z, y, x; as tifffile's letters: C channel, Y X spatial, T and Z planes.
    axes = axes.upper()
    data = np.asarray(node.data[0])
    _check_plane(path, axes, data.shape, plane)
    depth = None if data.dtype.kind == "f" else data.dtype.itemsize * 8
    return _to_yxc(data, axes, plane), depth


class _TiffErrorLog(logging.Handler):
    """Collects tifffile's logged errors in this thread: it logs a damaged file structure and reads on."""

    def __init__(self, path):
        super().__init__(logging.ERROR)
        self.path, self.thread, self.messages = path, threading.get_ident(), []

    def emit(self, record):
        if record.thread == self.thread:
            self.messages.append(record.getMessage())

    def check(self):
        if self.messages:
            raise InputError(
                f"image {self.path}: the TIFF file is damaged or incomplete ({self.messages[0]}); "
                "copy or export it again"
            )


def _read_tiff(path, plane, given_axes=None):
    """TIFF pixels as (Y, X, C) and BitsPerSample; an int `plane` reads only that plane's pages. `given_axes`
    (prepare.axes) replaces the axes tifffile reads from the file's metadata (or guesses without any)."""
    errors = _TiffErrorLog(path)
    logger = logging.getLogger("tifffile")
    logger.addHandler(errors)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            errors.check()
            page, axes, shape = series.keyframe, series.axes, series.shape
            if given_axes:
                axes = check_axes(given_axes)
                if len(axes) == len(series.get_shape(False)):  # axes of length 1 named too, e.g. Z of one plane
                    shape = series.get_shape(False)
                if len(axes) != len(shape):
                    raise InputError(
                        f"image {path}: prepare.axes '{given_axes}' names {len(axes)} axes, but the file holds a "
                        f"{len(shape)}-D image of shape {tuple(shape)} (axes '{series.axes}' by its own account); "
                        f"give {len(shape)} letters"
                    )
            _check_plane(path, axes, shape, plane)
            lead = len(axes) - len(page.axes)
            if (
                not given_axes
                and plane != "max"
                and axes.endswith(page.axes)
                and math.prod(shape[:lead]) == len(series.pages)
                and all(a in KEPT_AXES for a in page.axes)
            ):
                # One page per plane and channel: find this plane's pages instead of reading the stack.
                planes = [i for i, a in enumerate(axes[:lead]) if a not in KEPT_AXES]
                chans = [i for i, a in enumerate(axes[:lead]) if a in KEPT_AXES]
                keys = np.arange(len(series.pages)).reshape(shape[:lead]).transpose(planes + chans)
                keys = keys.reshape(math.prod(shape[i] for i in planes), -1)[plane]
                data = series.asarray(key=keys.tolist()).reshape(*(shape[i] for i in chans), *page.shape)
                axes, plane = "".join(axes[i] for i in chans) + page.axes, 0
            else:
                data = series.asarray().reshape(shape)
            depth = page.bitspersample
        errors.check()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"image {path}: cannot read it as a TIFF image ({type(exc).__name__}: {exc}); "
            "the file may be damaged, incompletely copied, or not a TIFF despite its name"
        ) from exc
    finally:
        logger.removeHandler(errors)
    return _to_yxc(data, axes, plane), depth


def _read_pillow(path, plane):
    """PNG or JPEG pixels as (Y, X, C) and the bit depth of their dtype; alpha is dropped."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            if img.format == "PNG" and mode in {"RGB", "RGBA"} and str(img.tile[0].args).endswith(";16B"):
                # Pillow keeps only the top 8 bits of 16-bit colour PNGs.
                data = imagecodecs.png_decode(path.read_bytes())
            elif img.format == "PNG" and mode == "I":
                data = np.array(img).astype(np.uint16)  # older Pillow opens 16-bit grey PNGs as 32-bit "I"
            elif mode in PILLOW_MODES:
                data = np.array(img)
            else:  # palette, CMYK, YCbCr, ...: the colours they show
                data, mode = np.array(img.convert("RGB")), "RGB"
    except Exception as exc:
        raise InputError(
            f"image {path}: cannot read it as a {path.suffix.lstrip('.').upper()} image ({type(exc).__name__}: {exc}); "
            "the file may be damaged, incompletely copied, or not that format despite its name"
        ) from exc
    data = data.astype(data.dtype.newbyteorder("="), copy=False).reshape(*data.shape[:2], -1)
    if mode in {"LA", "RGBA"}:
        data = data[..., :-1]
    _check_plane(path, "YXS", data.shape, plane)
    return data, data.dtype.itemsize * 8


def _check_plane(path, axes, shape, plane):
    """Check the image has height and width and that an int `plane` exists."""
    if "Y" not in axes or "X" not in axes:
        raise InputError(
            f"image {path}: not a 2-D image (shape {tuple(shape)}, axes {axes}); it needs a height and a width"
        )
    count = math.prod(n for a, n in zip(axes, shape) if a not in KEPT_AXES)
    if plane != "max" and not 0 <= plane < count:
        raise InputError(
            f"image {path}: plane {plane} does not exist; it has {count} plane(s) "
            f"(z-slices, time points, ...), numbered 0 to {count - 1}"
        )


def _to_yxc(data, axes, plane):
    """Project or pick the plane and order the rest as (Y, X, C)."""
    plane_dims = tuple(i for i, a in enumerate(axes) if a not in KEPT_AXES)
    if plane_dims and plane == "max":
        data = np.fmax.reduce(data, axis=plane_dims)  # fmax: a NaN pixel in one plane does not blank the projection
    elif plane_dims:
        plane_shape = tuple(data.shape[i] for i in plane_dims)
        data = np.moveaxis(data, plane_dims, range(len(plane_dims)))[np.unravel_index(plane, plane_shape)]
    axes = "".join(a for a in axes if a in KEPT_AXES)
    data = np.moveaxis(data, (axes.index("Y"), axes.index("X")), (0, 1))
    return data.reshape(*data.shape[:2], -1)


def _check_values(path, pixels, depth, bit_depth):
    """Reject pixel types and values the workflow cannot use; signed becomes unsigned; returns (pixels, depth)."""
    kind = pixels.dtype.kind
    if kind == "f":
        if np.isnan(pixels).all():
            raise InputError(f"image {path}: every pixel is NaN (not a number); the image holds no data")
        return pixels, None
    if kind not in "ui":
        raise InputError(
            f"image {path}: pixel type '{pixels.dtype}' is not supported; "
            "save it as an 8-, 12-, 16- or 32-bit integer or a 32-bit float image"
        )
    if kind == "i":
        low = int(pixels.min())
        if low < 0:
            raise InputError(
                f"image {path}: has negative pixel values (down to {low}); raw camera images are never "
                "negative, so this looks processed (e.g. background-subtracted); use the raw image"
            )
        pixels = pixels.view(f"u{pixels.dtype.itemsize}")
    if bit_depth != "auto":
        high = int(pixels.max())
        if high > 2**bit_depth - 1:
            raise InputError(
                f"image {path}: pixel value {high} exceeds the {bit_depth}-bit range (0 to {2**bit_depth - 1}); "
                f"set bit_depth to at least {high.bit_length()} or to 'auto'"
            )
        depth = bit_depth
    return pixels, depth


def pixel_size(path):
    """µm per pixel from a TIFF's own metadata (OME PhysicalSizeX in µm, ImageJ's micron unit, or a resolution in
    pixels per centimetre); None for other files or where the file does not say (a resolution in inches is a
    print setting, not a microscope's)."""
    if not str(path).lower().endswith((".tif", ".tiff")):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.ome_metadata:
                found = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
                if found and (not unit or unit.group(1) in ("µm", "um", "micron")):
                    return float(found.group(1))
            page = tif.pages.first
            resolution, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
            if resolution is None:
                return None
            numerator, denominator = resolution.value
            if not numerator:
                return None
            per_unit = denominator / numerator
            if tif.is_imagej and (tif.imagej_metadata or {}).get("unit") in ("micron", "um", "µm"):
                return per_unit
            return per_unit * 1e4 if unit is not None and int(unit.value) == 3 else None
    except Exception:  # noqa: BLE001 - metadata is optional; the pixels were read already
        return None
