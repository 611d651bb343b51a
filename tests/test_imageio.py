"""Raw image reading: TIFF flavours, PNG/JPEG, planes, channels, bit depth, and bad files named plainly."""

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from cellclass.io.errors import InputError
from cellclass.io.imageio import RawImage, read_image

RNG = np.random.default_rng(0)


def ints(shape, high, dtype=np.uint16):
    return RNG.integers(0, high, shape, dtype=dtype)


def tiff(path, data, **kwargs):
    # minisblack unless told: tifffile would otherwise store 3 or 4 planes as RGB(A).
    tifffile.imwrite(path, data, **{"photometric": "minisblack", **kwargs})
    return path


def test_uint8_tiff_becomes_yxc_with_its_bit_depth(tmp_path):
    data = ints((20, 30), 256, np.uint8)
    image = read_image(tiff(tmp_path / "a.tif", data))
    assert isinstance(image, RawImage) and image.paths == (tmp_path / "a.tif",)
    assert image.pixels.shape == (20, 30, 1) and image.pixels.dtype == np.uint8 and image.bit_depth == 8
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_uint16_tiff_and_upper_case_suffix(tmp_path):
    data = ints((20, 30), 65536)
    image = read_image(str(tiff(tmp_path / "a.TIFF", data)))
    assert image.bit_depth == 16 and image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_12_bit_tiff_reports_bits_per_sample(tmp_path):
    data = ints((20, 30), 4096)
    path = tiff(tmp_path / "a.tif", data, bitspersample=12)
    assert tifffile.TiffFile(path).pages[0].bitspersample == 12
    image = read_image(path)
    assert image.bit_depth == 12 and image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_bit_depth_override_for_12_bit_data_in_16_bit_files(tmp_path):
    path = tiff(tmp_path / "a.tif", ints((20, 30), 4096))
    assert read_image(path).bit_depth == 16
    assert read_image(path, bit_depth=12).bit_depth == 12


def test_values_beyond_the_given_bit_depth_are_refused(tmp_path):
    data = ints((20, 30), 4096)
    data[3, 4] = 5000
    path = tiff(tmp_path / "cam.tif", data)
    with pytest.raises(InputError, match=r"cam\.tif: pixel value 5000 exceeds the 12-bit range.*at least 13"):
        read_image(path, bit_depth=12)


def test_big_endian_tiff(tmp_path):
    data = ints((20, 30), 65536)
    image = read_image(tiff(tmp_path / "a.tif", data, byteorder=">"))
    assert image.pixels.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(image.pixels[..., 0], data)


@pytest.mark.parametrize("compression", ["lzw", "zlib", "deflate", "packbits"])
def test_compressed_tiff(tmp_path, compression):
    data = ints((3, 40, 50), 65536)
    path = tiff(tmp_path / "a.tif", data, compression=compression)
    np.testing.assert_array_equal(read_image(path, plane=2).pixels[..., 0], data[2])
    np.testing.assert_array_equal(read_image(path).pixels[..., 0], data.max(axis=0))


def test_imagej_cyx_hyperstack_gives_channels_last(tmp_path):
    data = ints((3, 20, 30), 65536)
    path = tiff(tmp_path / "a.tif", data, imagej=True, metadata={"axes": "CYX"})
    image = read_image(path)
    assert image.pixels.shape == (20, 30, 3)
    np.testing.assert_array_equal(image.pixels, data.transpose(1, 2, 0))


def test_imagej_tzcyx_hyperstack_planes(tmp_path):
    data = ints((2, 3, 2, 20, 30), 65536)
    path = tiff(tmp_path / "a.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    np.testing.assert_array_equal(read_image(path).pixels, data.max(axis=(0, 1)).transpose(1, 2, 0))
    # Planes count over T then Z in file order: plane 4 is t=1, z=1.
    np.testing.assert_array_equal(read_image(path, plane=4).pixels, data[1, 1].transpose(1, 2, 0))
    with pytest.raises(InputError, match=r"a\.tif: plane 6 does not exist; it has 6 plane"):
        read_image(path, plane=6)


def test_ome_tiff_with_channels_between_planes(tmp_path):
    data = ints((2, 3, 4, 20, 30), 65536)
    path = tiff(tmp_path / "a.ome.tif", data, ome=True, metadata={"axes": "TCZYX"})
    # Planes are T and Z (8 of them); plane 5 is t=1, z=1.
    np.testing.assert_array_equal(read_image(path, plane=5).pixels, data[1, :, 1].transpose(1, 2, 0))
    np.testing.assert_array_equal(read_image(path).pixels, data.max(axis=(0, 2)).transpose(1, 2, 0))


def test_multi_page_plain_tiff_pages_are_planes(tmp_path):
    data = ints((4, 20, 30), 65536)
    path = tmp_path / "a.tif"
    with tifffile.TiffWriter(path) as writer:
        for page in data:
            writer.write(page, metadata=None)
    np.testing.assert_array_equal(read_image(path).pixels[..., 0], data.max(axis=0))
    np.testing.assert_array_equal(read_image(path, plane=3).pixels[..., 0], data[3])


def test_a_plane_index_reads_only_that_planes_pages(tmp_path):
    data = ints((3, 20, 30), 65536)
    path = tmp_path / "a.tif"
    with tifffile.TiffWriter(path) as writer:
        for page in data:
            writer.write(page, metadata=None, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[2].dataoffsets[0]
    with open(path, "r+b") as f:  # damage the last page only
        f.seek(offset)
        f.write(b"\xff" * 16)
    np.testing.assert_array_equal(read_image(path, plane=0).pixels[..., 0], data[0])
    with pytest.raises(InputError, match=r"a\.tif: cannot read it as a TIFF image"):
        read_image(path)


def test_rgb_tiff_samples_are_channels(tmp_path):
    data = ints((20, 30, 3), 256, np.uint8)
    image = read_image(tiff(tmp_path / "a.tif", data, photometric="rgb"))
    np.testing.assert_array_equal(image.pixels, data)


def test_rgb_and_rgba_png(tmp_path):
    data = ints((20, 30, 4), 256, np.uint8)
    Image.fromarray(data[..., :3]).save(tmp_path / "rgb.png")
    Image.fromarray(data).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        image = read_image(tmp_path / name)
        assert image.bit_depth == 8 and image.pixels.shape == (20, 30, 3)
        np.testing.assert_array_equal(image.pixels, data[..., :3])


def test_palette_png_gives_the_colours_it_shows(tmp_path):
    img = Image.new("P", (6, 4))
    img.putpalette([0, 0, 0, 200, 10, 30])
    img.putpixel((2, 1), 1)
    img.save(tmp_path / "p.png")
    pixels = read_image(tmp_path / "p.png").pixels
    assert pixels.shape == (4, 6, 3) and pixels[1, 2].tolist() == [200, 10, 30] and pixels[0, 0].tolist() == [0, 0, 0]


def test_16_bit_png(tmp_path):
    data = ints((20, 30), 65536)
    Image.fromarray(data).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.bit_depth == 16 and image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_16_bit_colour_png_keeps_all_bits(tmp_path):
    data = ints((20, 30, 3), 65536)
    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(data))
    image = read_image(tmp_path / "a.png")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels, data)


@pytest.mark.parametrize("shape", [(40, 50), (40, 50, 3)])
def test_jpeg(tmp_path, shape):
    data = np.full(shape, 120, np.uint8)
    Image.fromarray(data).save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.bit_depth == 8 and image.pixels.shape == (40, 50, shape[2] if len(shape) == 3 else 1)
    assert np.abs(image.pixels.astype(int) - 120).max() <= 2


def test_one_file_per_channel_is_stacked_in_the_given_order(tmp_path):
    dapi, gfp = ints((20, 30), 4096), ints((20, 30), 4096)
    paths = [tiff(tmp_path / "w2_gfp.tif", gfp), tiff(tmp_path / "w1_dapi.tif", dapi)]
    image = read_image(paths)
    assert image.paths == tuple(paths) and image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels, np.stack([gfp, dapi], axis=-1))
    np.testing.assert_array_equal(read_image(paths, channels=[1]).pixels[..., 0], dapi)


def test_channel_files_of_different_size_are_refused(tmp_path):
    paths = [tiff(tmp_path / "w1.tif", ints((20, 30), 10)), tiff(tmp_path / "w2.tif", ints((20, 31), 10))]
    with pytest.raises(InputError, match=r"w2\.tif is 20 x 31 .* but .*w1\.tif is 20 x 30"):
        read_image(paths)


def test_channel_files_of_different_pixel_type_are_refused(tmp_path):
    paths = [tiff(tmp_path / "w1.tif", ints((20, 30), 10)), tiff(tmp_path / "w2.tif", ints((20, 30), 10, np.uint8))]
    with pytest.raises(InputError, match=r"w2\.tif has 8-bit integer pixels but .*w1\.tif has 16-bit"):
        read_image(paths)


def test_channel_selection(tmp_path):
    data = ints((3, 20, 30), 65536)
    path = tiff(tmp_path / "a.tif", data, imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(path, channels=[2, 0]).pixels, data[[2, 0]].transpose(1, 2, 0))
    with pytest.raises(InputError, match=r"a\.tif: channel 3 does not exist; it has 3 channel"):
        read_image(path, channels=[0, 3])


def test_float32_tiff_has_no_bit_depth(tmp_path):
    data = RNG.random((20, 30), dtype=np.float32)
    data[0, 0] = np.nan  # one bad pixel is not a reason to refuse the image
    image = read_image(tiff(tmp_path / "a.tif", data))
    assert image.bit_depth is None and image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_signed_int16_without_negatives_becomes_unsigned(tmp_path):
    data = ints((20, 30), 30000, np.int16)
    image = read_image(tiff(tmp_path / "a.tif", data))
    assert image.pixels.dtype == np.uint16 and image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_file_name_with_spaces_and_unicode(tmp_path):
    data = ints((20, 30), 65536)
    image = read_image(tiff(tmp_path / "zellé bild 1.tif", data))
    np.testing.assert_array_equal(image.pixels[..., 0], data)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.tif: file not found"):
        read_image(tmp_path / "nothere.tif")


def test_folder_instead_of_file(tmp_path):
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(InputError, match=r"dir\.tif: is a folder"):
        read_image(tmp_path / "dir.tif")


@pytest.mark.parametrize("name", ["empty.tif", "empty.png"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).touch()
    with pytest.raises(InputError, match=rf"{name}: the file is empty \(0 bytes\)"):
        read_image(tmp_path / name)


def test_unsupported_file_type(tmp_path):
    (tmp_path / "a.czi").write_bytes(b"ZISRAWFILE")
    with pytest.raises(InputError, match=r"a\.czi: unsupported file type '\.czi'"):
        read_image(tmp_path / "a.czi")


@pytest.mark.parametrize("name, kind", [("notes.tif", "TIFF"), ("notes.png", "PNG"), ("notes.jpg", "JPG")])
def test_text_file_with_an_image_name(tmp_path, name, kind):
    (tmp_path / name).write_text("plate layout, not an image\n")
    with pytest.raises(InputError, match=rf"{name}: cannot read it as a {kind} image \(.*Error: .+\)"):
        read_image(tmp_path / name)


@pytest.mark.parametrize("compression", [None, "lzw"])
def test_truncated_tiff(tmp_path, compression):
    path = tiff(tmp_path / "cut.tif", ints((3, 64, 64), 65536), compression=compression)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.tif: (cannot read it as a TIFF image|the TIFF file is damaged)"):
        read_image(path)


def test_truncated_imagej_hyperstack_is_not_read_as_one_plane(tmp_path):
    # tifffile logs the broken structure and falls back to the first page; that must not pass silently.
    path = tiff(tmp_path / "cut.tif", ints((2, 3, 2, 32, 32), 4096), imagej=True, metadata={"axes": "TZCYX"})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.tif: the TIFF file is damaged or incomplete"):
        read_image(path, plane=0)


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_png_and_jpeg(tmp_path, name):
    path = tmp_path / name
    Image.fromarray(ints((64, 64, 3), 256, np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"{name}: cannot read it as a"):
        read_image(path)


@pytest.mark.parametrize("dtype", [np.complex64, bool])
def test_unsupported_pixel_types(tmp_path, dtype):
    path = tiff(tmp_path / "odd.tif", np.ones((8, 8), dtype))
    with pytest.raises(InputError, match=r"odd\.tif: pixel type '.+' is not supported"):
        read_image(path)


def test_one_dimensional_tiff(tmp_path):
    path = tmp_path / "line.tif"
    tifffile.imwrite(path, np.arange(20, dtype=np.uint8))
    with pytest.raises(InputError, match=r"line\.tif: not a 2-D image"):
        read_image(path)


def test_nan_only_float_image(tmp_path):
    path = tiff(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32))
    with pytest.raises(InputError, match=r"nan\.tif: every pixel is NaN"):
        read_image(path)


def test_negative_signed_values_are_refused(tmp_path):
    data = ints((8, 8), 100, np.int16)
    data[2, 2] = -7
    with pytest.raises(InputError, match=r"bg\.tif: has negative pixel values \(down to -7\)"):
        read_image(tiff(tmp_path / "bg.tif", data))


def test_plane_of_a_single_plane_png(tmp_path):
    Image.fromarray(ints((8, 8), 256, np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", plane=0).pixels.shape == (8, 8, 1)
    with pytest.raises(InputError, match=r"a\.png: plane 1 does not exist; it has 1 plane"):
        read_image(tmp_path / "a.png", plane=1)


def test_axes_say_what_a_plain_tiff_holds(tmp_path):
    """A 2-channel field written by plain tifffile.imwrite reads as planes (CYX) or as 64 planes of 64 x 2 px (YXC)
    unless prepare.axes says what the axes are."""
    data = ints((2, 48, 64), 4096)
    cyx, yxc = tmp_path / "cyx.tif", tmp_path / "yxc.tif"
    tifffile.imwrite(cyx, data)
    tifffile.imwrite(yxc, data.transpose(1, 2, 0))
    assert read_image(cyx).pixels.shape == (48, 64, 1)  # as the file says: planes, projected
    np.testing.assert_array_equal(read_image(cyx, axes="CYX").pixels, data.transpose(1, 2, 0))
    np.testing.assert_array_equal(read_image(yxc, axes="yxc").pixels, data.transpose(1, 2, 0))
    stack = ints((3, 2, 48, 64), 4096)
    tifffile.imwrite(tmp_path / "zcyx.tif", stack)
    np.testing.assert_array_equal(
        read_image(tmp_path / "zcyx.tif", axes="ZCYX").pixels, stack.max(axis=0).transpose(1, 2, 0)
    )
    np.testing.assert_array_equal(
        read_image(tmp_path / "zcyx.tif", axes="ZCYX", plane=2).pixels, stack[2].transpose(1, 2, 0)
    )
    # A Z of one plane may be named: the file keeps it as an axis of length 1.
    tifffile.imwrite(tmp_path / "one.tif", stack[:1])
    assert read_image(tmp_path / "one.tif", axes="ZCYX").pixels.shape == (48, 64, 2)


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ("ZCYX", r"cyx\.tif: prepare\.axes 'ZCYX' names 4 axes, but the file holds a 3-D image of shape \(2, 48, 64\)"),
        ("YX", r"cyx\.tif: prepare\.axes 'YX' names 2 axes, but the file holds a 3-D image"),
        ("CYY", r"prepare\.axes: 'CYY' is no axes order"),
        ("CZY", r"prepare\.axes: 'CZY' is no axes order"),
        ("C-YX", r"prepare\.axes: 'C-YX' is no axes order"),
    ],
)
def test_axes_that_do_not_fit_are_named_with_the_file(tmp_path, axes, message):
    tifffile.imwrite(tmp_path / "cyx.tif", ints((2, 48, 64), 4096))
    with pytest.raises(InputError, match=message):
        read_image(tmp_path / "cyx.tif", axes=axes)


def test_plane_files_of_a_channel_are_projected_or_picked(tmp_path):
    planes = [[ints((16, 20), 4096) for _ in range(3)] for _ in range(2)]  # 2 channels x 3 planes
    paths = []
    for c, channel in enumerate(planes):
        for p, pixels in enumerate(channel):
            paths.append(tiff(tmp_path / f"c{c}p{p}.tif", pixels))
    image = read_image(paths, planes=3)
    np.testing.assert_array_equal(image.pixels, np.stack([np.max(ch, axis=0) for ch in planes], axis=2))
    assert image.bit_depth == 16 and len(image.paths) == 6
    np.testing.assert_array_equal(
        read_image(paths, planes=3, plane=1).pixels, np.stack([ch[1] for ch in planes], axis=2)
    )
    with pytest.raises(InputError, match="plane 3 does not exist; it has 3 plane files per channel"):
        read_image(paths, planes=3, plane=3)
    with pytest.raises(InputError, match="6 files are not 4 plane"):
        read_image(paths, planes=4)
    tiff(tmp_path / "c1p2.tif", ints((16, 21), 4096))
    with pytest.raises(InputError, match=r"c1p2\.tif is 16 x 21"):
        read_image(paths, planes=3)
