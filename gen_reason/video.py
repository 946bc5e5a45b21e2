"""Video I/O: the only module that touches codecs (docs/ARCHITECTURE.md).

A video is a ``numpy.ndarray`` of ``uint8`` with shape ``(T, H, W, 3)``, RGB. MP4 goes
through PyAV (H.264, yuv420p), GIF through imageio/Pillow, PNG through OpenCV.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from gen_reason.errors import UserError

Video = np.ndarray


def as_video(frames) -> Video:
    """Validate and return ``frames`` as a contiguous ``(T, H, W, 3)`` uint8 array."""
    video = np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise UserError(f"a video must have shape (T, H, W, 3); got {video.shape}")
    if video.shape[0] == 0:
        raise UserError("the video has no frames")
    if video.dtype != np.uint8:
        if np.issubdtype(video.dtype, np.floating) and video.max(initial=0) <= 1.0:
            video = video * 255.0
        video = np.clip(np.rint(video), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(video)


def _even(n: int) -> int:
    return n + (n % 2)


def write_mp4(path: str | os.PathLike, video: Video, fps: float = 16, crf: int = 18, preset: str = "veryfast",
              lossless: bool = False) -> Path:
    """Write ``video`` as H.264 MP4 (odd sizes are padded by edge replication to even).

    ``crf`` is the x264 constant rate factor (0 lossless-ish .. 51 worst). ``crf=0`` is
    lossless only in YUV 4:2:0: colour is averaged over 2x2 pixels, which smears small
    objects (a 3-pixel agent loses most of its red). ``lossless=True`` writes RGB H.264
    (``libx264rgb``, crf 0, any size, no padding): decoding gives the frames back bit for
    bit. Use it for training data; fewer players show it.

    The same frames and arguments give the same bytes, in any process, whatever else
    the process did before. What that takes, each found by experiment:

    * x264 is held to its AVX2 code (``x264-params asm=AVX2``) on CPUs with AVX-512.
      With its AVX-512 code, x264's output depends on heap memory that nothing wrote:
      the first frame's bottom-right macroblock got a quantiser that followed what the
      heap held before (12 writes of one video in one process gave 2 different files; 50 to 90
      of 300 videos between two identical ``make-dataset`` runs). The difference was
      always the last bytes of the first (IDR) slice; the decoded frames were equal.
      Filling fresh heap memory with a constant (glibc ``MALLOC_PERTURB_``) made the
      runs identical, and one constant (``MALLOC_PERTURB_=1``) changed every video;
      ``asm=AVX2`` made them identical under any heap, and its output equals the
      AVX-512 output whenever the latter is not disturbed. Not the cause: threads
      (already 1), adaptive quantisation (``aq-mode=0`` still differed), the muxer.
      C code (``asm=0``) encodes differently and is 2-3x slower. Elsewhere (AVX2 or
      older, ARM) x264 picks its own code. See :func:`x264_params`.
    * One encoder thread (``threads=1``): x264's output depends on its thread count,
      whose default follows the machine's cores. Datasets run one process per core.
    * ``+bitexact`` for the muxer and the codec: no library version string (``Lavf``)
      in the file. Timestamps are the frame indices at ``fps`` (rounded to whole
      frames per second), and the MP4 carries no creation time.

    The x264 build's version string stays in the stream (its SEI), so another x264
    build may write other bytes for the same frames.
    The file is written under a unique temporary name and renamed into place, so two
    processes writing one path never share a temporary file and a reader never sees
    half a file.
    """
    import av

    from gen_reason.folders import replacing

    video = as_video(video)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = video.shape
    if not lossless and ((h % 2) or (w % 2)):
        video = np.pad(video, ((0, 0), (0, _even(h) - h), (0, _even(w) - w), (0, 0)), mode="edge")
    options = {"crf": "0" if lossless else str(crf), "preset": preset, "threads": "1", "flags": "+bitexact"}
    if x264_params():
        options["x264-params"] = x264_params()
    with replacing(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("libx264rgb" if lossless else "libx264", rate=int(round(fps)))
            stream.width = video.shape[2]
            stream.height = video.shape[1]
            stream.pix_fmt = "rgb24" if lossless else "yuv420p"
            stream.options = options
            stream.codec_context.thread_count = 1
            for frame in video:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


@functools.lru_cache(maxsize=None)
def x264_params() -> str | None:
    """The ``x264-params`` :func:`write_mp4` gives x264: ``"asm=AVX2"`` on a CPU with
    AVX-512 (x264's AVX-512 code reads uninitialised memory, so its output varies from
    write to write; see :func:`write_mp4`), else ``None`` (x264 picks its own code).

    The CPU's features are numpy's run-time detection (which also checks that the
    operating system saves AVX-512 state, as x264's does)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = {}
    if features.get("AVX512F") and features.get("AVX2") and features.get("FMA3"):
        return "asm=AVX2"
    return None


def _existing(path: str | os.PathLike) -> Path:
    """``path`` as a Path; :class:`UserError` when nothing is there."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"video not found: {path}")
    return path


def _png_frames(folder: Path) -> list[Path]:
    """A folder video's frames: its PNG files in name order; :class:`UserError` when none."""
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not frames:
        raise UserError(f"no PNG frames in folder {folder}")
    return frames


def read_video(path: str | os.PathLike, max_frames: int | None = None, downscale: int = 1) -> Video:
    """Read an MP4/WebM/AVI/GIF file (or a folder of PNG frames) into a video array.

    ``downscale`` (an integer, default 1) shrinks every frame by that factor as it is
    decoded (area average, ``W // downscale`` x ``H // downscale``): for a 1024x1024
    video that only needs to be looked at small, this is faster than decoding at full
    size and resizing afterwards, and the full-size frames are never held in memory.
    Raises :class:`UserError` with the reason when the file is missing, unreadable or
    holds no frames.
    """
    if int(downscale) != downscale or downscale < 1:
        raise ValueError(f"downscale must be a positive integer; got {downscale!r}")
    downscale = int(downscale)
    path = _existing(path)
    if path.is_dir():
        return _shrink_each(as_video([read_image(p) for p in _png_frames(path)[:max_frames]]), downscale)
    if path.suffix.lower() == ".gif":
        return _shrink_each(_read_gif(path, max_frames), downscale)
    video, count = _decode(path, max_frames, downscale)
    if not count:
        raise UserError(f"video {path} has no frames")
    # A header that promised many more frames than came would leave a mostly empty buffer.
    return video[:count] if count > 0.75 * len(video) else video[:count].copy()


def _read_gif(path: Path, max_frames: int | None) -> Video:
    """A GIF's frames (the first ``max_frames``) as RGB."""
    import imageio.v3 as iio

    try:
        frames = iio.imread(path, index=None, mode="RGB")
    except Exception as exc:  # imageio raises many types for a broken file
        raise UserError(f"cannot read video {path}: {exc}") from None
    return as_video(frames[:max_frames] if max_frames else frames)


def _decode(path: Path, max_frames: int | None, downscale: int) -> tuple[np.ndarray | None, int]:
    """Decode a video file's first stream with PyAV, each frame shrunk by ``downscale`` as it
    is converted to RGB, into one preallocated array: ``(array, frames decoded)`` (the
    array may be longer than the count; ``None`` when no frame came)."""
    import av
    from av.video.reformatter import VideoReformatter

    video = None
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            expected = stream.frames or 0  # from the container's header; 0 when unknown
            if max_frames:
                expected = min(expected, max_frames) if expected else max_frames
            # One converter for every frame keeps its scaling/colour set-up (a frame's own
            # to_ndarray builds a new one each time).
            reformatter = VideoReformatter()
            size = interpolation = None
            for frame in container.decode(stream):
                if size is None:
                    size = (max(1, frame.width // downscale), max(1, frame.height // downscale))
                    interpolation = "AREA" if downscale > 1 else None
                rgb = reformatter.reformat(frame, width=size[0], height=size[1], format="rgb24",
                                           interpolation=interpolation).to_ndarray()
                if video is None or count == len(video):
                    # Decode straight into one preallocated array (grown by doubling when
                    # the header's frame count is missing or wrong), not a list to stack.
                    # An implausible header count (over 4 GiB of frames) is not trusted.
                    first = expected if expected * rgb.nbytes <= 4 << 30 else 0
                    grown = np.empty((max(first, 2 * count, 16), *rgb.shape), np.uint8)
                    if video is not None:
                        grown[:count] = video[:count]
                    video = grown
                video[count] = rgb
                count += 1
                if max_frames and count >= max_frames:
                    break
    except UserError:
        raise
    except Exception as exc:  # PyAV raises InvalidDataError, OSError, ...
        raise UserError(f"cannot read video {path}: {exc}") from None
    return video, count


def _shrink_each(video: Video, downscale: int) -> Video:
    """Shrink every frame by an integer factor (area average), as :func:`read_video` decodes."""
    if downscale == 1:
        return video
    import cv2

    h, w = video.shape[1:3]
    size = (max(1, w // downscale), max(1, h // downscale))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in video])


def video_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a video file's frames (or a PNG folder's first frame),
    read from the header without decoding. Raises :class:`UserError` when unreadable."""
    path = _existing(path)
    if path.is_dir():
        return read_image(_png_frames(path)[0]).shape[:2]
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        try:
            return iio.imread(path, index=0, mode="RGB").shape[:2]
        except Exception as exc:
            raise UserError(f"cannot read video {path}: {exc}") from None
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"no video stream in {path}")
            context = container.streams.video[0].codec_context
            if context.width and context.height:
                return context.height, context.width
            frame = next(container.decode(video=0))  # some containers only know after a frame
            return frame.height, frame.width
    except UserError:
        raise
    except Exception as exc:  # PyAV raises InvalidDataError, OSError, StopIteration, ...
        raise UserError(f"cannot read video {path}: {exc}") from None


def iter_frames(path: str | os.PathLike):
    """Yield the frames of a video file one by one (constant memory)."""
    import av

    path = Path(path)
    if not path.exists():
        raise UserError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except Exception as exc:
        raise UserError(f"cannot read video {path}: {exc}") from None


def write_gif(path: str | os.PathLike, video: Video, fps: float = 8) -> Path:
    """Write ``video`` as a looping GIF."""
    import imageio.v3 as iio

    video = as_video(video)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, video, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB ``(H, W, 3)`` uint8 image as PNG (deterministic bytes; under a unique
    temporary name, renamed into place)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise UserError(f"cannot encode image for {path}")
    from gen_reason.folders import write_atomic

    return write_atomic(path, data.tobytes())


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``(H, W, 3)`` uint8."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path}")
    return np.ascontiguousarray(image[..., ::-1])


def filmstrip(video: Video, n: int = 8, gap: int = 2) -> np.ndarray:
    """Lay ``n`` evenly spaced frames of ``video`` side by side in one image."""
    video = as_video(video)
    idx = np.linspace(0, len(video) - 1, num=min(n, len(video))).round().astype(int)
    h, w = video.shape[1:3]
    strip = np.full((h, len(idx) * (w + gap) - gap, 3), 255, np.uint8)
    for k, i in enumerate(idx):
        strip[:, k * (w + gap) : k * (w + gap) + w] = video[i]
    return strip


def side_by_side(*videos: Video, gap: int = 4) -> Video:
    """Join videos horizontally, frame by frame (shorter ones hold their last frame;
    different heights are resized to the first video's height)."""
    import cv2

    videos = [as_video(v) for v in videos]
    h = videos[0].shape[1]
    t = max(len(v) for v in videos)
    resized = []
    for v in videos:
        if v.shape[1] != h:
            w = int(round(v.shape[2] * h / v.shape[1]))
            v = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_NEAREST) for f in v])
        if len(v) < t:
            v = np.concatenate([v, np.repeat(v[-1:], t - len(v), axis=0)])
        resized.append(v)
    parts = []
    for k, v in enumerate(resized):
        if k:
            parts.append(np.full((t, h, gap, 3), 255, np.uint8))
        parts.append(v)
    return np.concatenate(parts, axis=2)


def letterbox_box(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where an image of ``image_size`` (H, W) lies, as ``(x0, y0, x1, y1)``, once scaled to
    fit inside a ``size`` (H, W) canvas without changing its aspect ratio and centred."""
    h, w = image_size
    big_h, big_w = size
    scale = min(big_h / h, big_w / w)
    fit_w, fit_h = min(big_w, max(1, round(w * scale))), min(big_h, max(1, round(h * scale)))
    x0, y0 = (big_w - fit_w) // 2, (big_h - fit_h) // 2
    return x0, y0, x0 + fit_w, y0 + fit_h


def same_aspect(a: tuple[int, int], b: tuple[int, int], tolerance: float = 0.02) -> bool:
    """Whether two (H, W) sizes have aspect ratios within ``tolerance`` (relative) of each other."""
    return abs((a[1] / a[0]) / (b[1] / b[0]) - 1.0) <= tolerance


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """``(canvas, box)``: ``image`` (H, W, 3) scaled to fit a ``size`` (H, W) canvas and
    centred on bars of its own border colour (the median of its outermost pixels, so a
    puzzle gets a wider margin, not a black bar a model could read as a wall); ``box`` is
    where it lies (:func:`letterbox_box`). An image of ``size``'s aspect ratio (within
    2 %) comes back unchanged with ``box`` None: the model's own resize does no harm there.
    :func:`crop_letterbox` undoes it on the frames that come back."""
    import cv2

    image = np.asarray(image)
    if same_aspect(image.shape[:2], size):
        return image, None
    x0, y0, x1, y1 = letterbox_box(image.shape[:2], size)
    ring = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    canvas = np.empty((size[0], size[1], 3), np.uint8)
    canvas[:] = np.median(ring, axis=0).astype(np.uint8)
    shrinking = (x1 - x0) * (y1 - y0) < image.shape[0] * image.shape[1]
    canvas[y0:y1, x0:x1] = cv2.resize(image, (x1 - x0, y1 - y0),
                                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return canvas, (x0, y0, x1, y1)


def crop_letterbox(frames: Video, box: tuple[int, int, int, int] | None, canvas_size: tuple[int, int]) -> Video:
    """The part of letterboxed ``frames`` (T, h, w, 3) where the image lies: ``box`` is in a
    ``canvas_size`` (H, W) canvas (as :func:`letterbox` returned it) and is scaled to the
    frames' own size first, so frames decoded at another size crop right too. ``box``
    None returns the frames unchanged."""
    if box is None:
        return frames
    h, w = frames.shape[1:3]
    sx, sy = w / canvas_size[1], h / canvas_size[0]
    x0, y0 = int(round(box[0] * sx)), int(round(box[1] * sy))
    x1, y1 = max(x0 + 1, int(round(box[2] * sx))), max(y0 + 1, int(round(box[3] * sy)))
    return np.ascontiguousarray(frames[:, y0:y1, x0:x1])
