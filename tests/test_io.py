import numpy as np
import pytest
from PIL import Image

from dfss.data.errors import DataError
from dfss.data.io import load_rgb, read_image_size


def test_grayscale_is_replicated_to_rgb(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    rgb = load_rgb(tmp_path / "g.png")
    assert rgb.shape == (10, 12, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], gray) and np.array_equal(rgb[..., 2], gray)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red channel
    rgba[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    rgb = load_rgb(tmp_path / "a.png")
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert rgb[3, 3].tolist() == [255, 255, 255]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_scaled_from_their_full_range(tmp_path, suffix):
    raw = np.array([[0, 257, 65535], [32896, 1000, 60000]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / f"raw{suffix}")
    rgb = load_rgb(tmp_path / f"raw{suffix}")
    assert rgb[..., 1].tolist() == [[0, 1, 255], [128, 4, 233]]


def test_truncated_image_is_a_data_error_naming_file_and_id(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert read_image_size(path) == (64, 64)  # the header survives, the pixels do not
    with pytest.raises(DataError, match=r"cut\.png \(image id 42\)"):
        load_rgb(path, image_id=42)


def test_missing_and_non_image_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="missing image file"):
        load_rgb(tmp_path / "nope.png", image_id=1)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"junk\.png"):
        read_image_size(tmp_path / "junk.png")
