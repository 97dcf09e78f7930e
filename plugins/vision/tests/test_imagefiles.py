"""The user's --data: folders of PNG/JPEG (flat or one subfolder per class) and .npy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradleak import DataError, UsageError
from gradleak_vision.cases import LeNetCase
from gradleak_vision.data import load_image_data


def u8(rng, *shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def one_line_error(excinfo, *needles):
    message = str(excinfo.value)
    assert isinstance(excinfo.value, UsageError) and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_flat_folder_gets_cyclic_labels_and_is_fitted_to_3x32x32(tmp_path, rng, write_image):
    write_image(tmp_path / "a.png", u8(rng, 40, 50, 3))
    write_image(tmp_path / "b.png", u8(rng, 32, 32))  # grayscale
    write_image(tmp_path / "c.png", u8(rng, 20, 20, 4))  # RGBA, upscaled
    write_image(tmp_path / "d.jpg", u8(rng, 64, 48, 3))
    write_image(tmp_path / "e.JPEG", u8(rng, 33, 31, 3))
    (tmp_path / "notes.txt").write_text("ignored")
    out = load_image_data(tmp_path, (3, 32, 32), num_classes=3)
    assert out.modality == "image" and out.data.shape == (5, 3, 32, 32) and out.data.dtype == torch.float32
    assert out.labels.tolist() == [0, 1, 2, 0, 1]
    assert 0.0 <= float(out.data.min()) and float(out.data.max()) <= 1.0
    assert torch.equal(out.data[1][0], out.data[1][2])  # grayscale replicated to RGB


def test_class_subfolders_are_labelled_by_sorted_name(tmp_path, rng, write_image):
    write_image(tmp_path / "b_dog" / "1.png", u8(rng, 32, 32, 3))
    write_image(tmp_path / "a_cat" / "2.png", u8(rng, 32, 32, 3))
    write_image(tmp_path / "a_cat" / "1.png", u8(rng, 32, 32, 3))
    (tmp_path / "empty").mkdir()  # no images: not a class
    out = load_image_data(tmp_path, num_classes=20)
    assert out.labels.tolist() == [0, 0, 1]
    first = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "a_cat" / "1.png"), dtype=np.float64) / 255
    assert np.allclose(out.data[0].numpy().transpose(1, 2, 0), first, atol=1e-6)  # exact size: used as it is


def test_resizing_keeps_the_aspect_ratio_by_a_centred_crop(tmp_path, write_image):
    wide = np.zeros((64, 128, 3), dtype=np.uint8)
    wide[:, 32:96] = 255  # the centred square is white, the sides black
    write_image(tmp_path / "wide.png", wide)
    out = load_image_data(tmp_path, (3, 32, 32), num_classes=10)
    assert out.data.shape == (1, 3, 32, 32)
    assert float(out.data.min()) > 0.99


def test_grayscale_target(tmp_path, rng, write_image):
    write_image(tmp_path / "x.png", u8(rng, 50, 50, 3))
    out = load_image_data(tmp_path, (1, 28, 28), num_classes=10)
    assert out.data.shape == (1, 1, 28, 28)


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
def test_npy_layouts_and_dtypes(tmp_path, rng, layout):
    x = rng.random((5, 3, 32, 32)).astype(np.float32)
    stored = {"nchw": x, "nhwc": x.transpose(0, 2, 3, 1), "nhw": x[:, 0]}[layout]
    np.save(tmp_path / "x.npy", stored)
    out = load_image_data(tmp_path / "x.npy", num_classes=4)
    assert out.data.shape == (5, 3, 32, 32) and out.labels.tolist() == [0, 1, 2, 3, 0]
    expected = x if layout != "nhw" else np.repeat(x[:, :1], 3, axis=1)
    assert np.allclose(out.data.numpy(), expected, atol=1e-6)


def test_npy_uint8_is_scaled_and_resized(tmp_path, rng):
    np.save(tmp_path / "x.npy", u8(rng, 2, 64, 64, 3))
    out = load_image_data(tmp_path / "x.npy", num_classes=10)
    assert out.data.shape == (2, 3, 32, 32) and 0.0 <= float(out.data.min()) and float(out.data.max()) <= 1.0


@pytest.mark.parametrize("shape", [(5, 32), (2, 5, 32, 32), (1, 2, 3, 32, 32)])
def test_npy_of_the_wrong_shape(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path / "bad.npy", num_classes=10)
    one_line_error(excinfo, "bad.npy", "(N, C, H, W)", str(shape))


def test_npy_floats_outside_the_unit_range(tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 3, 32, 32), 200.0))
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path / "x.npy", num_classes=10)
    one_line_error(excinfo, "x.npy", "[0, 1]", "divide by 255")


def test_corrupt_npy(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path / "x.npy", num_classes=10)
    one_line_error(excinfo, "x.npy")


def test_corrupt_image_is_named(tmp_path, rng, write_image):
    write_image(tmp_path / "good.png", u8(rng, 32, 32, 3))
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path, num_classes=10)
    one_line_error(excinfo, "broken.png", "replace or remove")


def test_truncated_image_is_named(tmp_path, rng, write_image):
    good = write_image(tmp_path / "full.png", u8(rng, 64, 64, 3)).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path, num_classes=10)
    one_line_error(excinfo, "cut.png")


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path / "nowhere", num_classes=10)
    one_line_error(excinfo, "nowhere", "no such file", "PNG/JPEG")


def test_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path, num_classes=10)
    one_line_error(excinfo, str(tmp_path), "no PNG/JPEG images")
    (tmp_path / "photo.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path, num_classes=10)
    one_line_error(excinfo, "photo.gif")


def test_unsupported_file(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path / "data.csv", num_classes=10)
    one_line_error(excinfo, "data.csv", ".npy")


def test_images_beside_class_subfolders_are_refused(tmp_path, rng, write_image):
    write_image(tmp_path / "loose.png", u8(rng, 32, 32, 3))
    write_image(tmp_path / "cat" / "1.png", u8(rng, 32, 32, 3))
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path, num_classes=10)
    one_line_error(excinfo, "loose.png", "cat", "subfolder")


def test_more_class_subfolders_than_classes(tmp_path, rng, write_image):
    for name in "abc":
        write_image(tmp_path / name / "1.png", u8(rng, 32, 32, 3))
    with pytest.raises(DataError) as excinfo:
        load_image_data(tmp_path, num_classes=2)
    one_line_error(excinfo, "3 class subfolders", "2 classes")


def test_the_case_reads_user_data(tmp_path, rng, write_image):
    write_image(tmp_path / "a.png", u8(rng, 100, 80, 3))
    out = LeNetCase().load_data(tmp_path)
    assert out.data.shape == (1, 3, 32, 32) and out.labels.tolist() == [0]
