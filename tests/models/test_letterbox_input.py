"""A puzzle of another aspect ratio goes into the model letterboxed, not stretched, and the
frames come back cropped to it (gen_reason.video.letterbox / crop_letterbox)."""

import numpy as np
import pytest

from gen_reason.models import DiffusersVideoGenerator, testing
from gen_reason.video import crop_letterbox, letterbox, letterbox_box


def test_letterbox_box_fits_and_centres():
    assert letterbox_box((251, 192), (480, 832)) == (232, 0, 599, 480)  # portrait puzzle, landscape model
    assert letterbox_box((100, 200), (100, 100)) == (0, 25, 100, 75)
    assert letterbox_box((50, 50), (80, 80)) == (0, 0, 80, 80)


def test_letterbox_pads_with_the_border_colour_and_crop_undoes_it():
    image = np.zeros((30, 20, 3), np.uint8)
    image[:] = (200, 210, 220)
    image[5:25, 4:16] = (255, 0, 0)
    canvas, box = letterbox(image, (40, 80))
    assert canvas.shape == (40, 80, 3) and box == (26, 0, 53, 40)
    assert (canvas[:, :26] == (200, 210, 220)).all() and (canvas[:, 53:] == (200, 210, 220)).all()
    video = np.repeat(canvas[None], 3, axis=0)
    back = crop_letterbox(video, box, (40, 80))
    assert back.shape == (3, 40, 27, 3)  # the image at the canvas's scale, bars gone
    # frames decoded at half the canvas size crop at half the box
    assert crop_letterbox(video[:, ::2, ::2], box, (40, 80)).shape == (3, 20, 13, 3)
    same, none = letterbox(image, (60, 40))
    assert none is None and same is image


@pytest.mark.parametrize("kind", ["wan2.1-i2v"])
def test_the_backend_letterboxes_the_image_and_crops_the_frames(tiny_model_dir, kind, monkeypatch):
    generator = DiffusersVideoGenerator.from_pretrained(tiny_model_dir(kind), steps=1, **testing.TINY_GEOMETRY[kind])
    height, width = testing.TINY_GEOMETRY[kind]["size"]
    image = np.zeros((10, 20, 3), np.uint8)  # twice as wide as tall; the model is square
    image[:] = (40, 200, 40)
    seen = {}
    original = generator._denoise

    def spy(picture, *args, **kwargs):
        seen["picture"] = np.asarray(picture)
        return original(picture, *args, **kwargs)

    def decode(latents, gen, num_frames):
        # bars red, the image's area green: what comes back must be green only
        frames = np.zeros((num_frames, height, width, 3), np.uint8)
        frames[:] = (255, 0, 0)
        x0, y0, x1, y1 = letterbox_box((10, 20), (height, width))
        frames[:, y0:y1, x0:x1] = (0, 255, 0)
        return frames

    monkeypatch.setattr(generator, "_denoise", spy)
    monkeypatch.setattr(generator, "_decode", decode)
    video = generator.generate(image, "a prompt", seeds=[0], num_frames=5)[0]
    picture = seen["picture"]
    assert picture.shape == (height, width, 3)
    assert (picture[0] == (40, 200, 40)).all()  # the bars take the image's border colour
    assert video.shape == (5, 10, 20, 3)
    assert (video[..., 1] > 200).all() and (video[..., 0] < 50).all(), "bars leaked into the cropped frames"
