"""Which pixels show an object's colour, and the blobs they make (maze-family tracking).

Every pixel is classified against a palette (the object colours, the spec's scene
colours and the dominant colours of frame 0) through a 32x32x32 lookup table
(:func:`build_lut`), so H.264 chroma shift or a slight recolouring still lands on the
nearest colour; :func:`target_pixels` finds every object-coloured pixel of a video and
:func:`components` its 8-connected blobs per frame, all frames at once.
"""

from __future__ import annotations

import cv2
import numpy as np

from gen_reason.verifiers.parallel import map_chunks

# Colours are looked up at 5 bits per channel: fine enough to separate scene colours,
# coarse enough that the table (32^3 entries) costs nothing to build.
_BITS = 5
_LEVELS = 1 << _BITS
_FRAME_CHUNK = 32


def _quantise(frames: np.ndarray) -> np.ndarray:
    shift = 8 - _BITS
    f = frames >> shift
    out = f[..., 0].astype(np.uint16) << (2 * _BITS)
    out |= f[..., 1].astype(np.uint16) << _BITS
    out |= f[..., 2]
    return out


def dominant_colours(image: np.ndarray, min_share: float = 0.004, limit: int = 24,
                     ignore: np.ndarray | None = None) -> list[np.ndarray]:
    """Mean colours of the most common 5-bit colour bins of ``image`` (scene palette),
    leaving out pixels where ``ignore`` (H, W) is True (the moving objects)."""
    q = _quantise(image).ravel()
    flat = image.reshape(-1, 3)
    if ignore is not None:
        keep = ~ignore.ravel()
        q, flat = q[keep], flat[keep]
    counts = np.bincount(q, minlength=_LEVELS ** 3)
    # The ``limit`` largest bins, largest first. Sort only the occupied bins: a scene has a
    # few hundred of the 32,768, and sorting (or partitioning) the many empty ones is slow.
    occupied = np.flatnonzero(counts)
    order = occupied[np.argsort(counts[occupied], kind="stable")[::-1][:limit]]
    order = order[counts[order] >= min_share * max(1, q.size)]
    if len(order) == 0:
        return []
    # One pass for all the bins' channel sums (not one masked pass per bin).
    slot = np.full(_LEVELS ** 3, len(order), np.int64)
    slot[order] = np.arange(len(order))
    which = slot[q]
    sums = np.stack([np.bincount(which, weights=flat[:, c], minlength=len(order) + 1)[: len(order)]
                     for c in range(3)], 1)
    return list(sums / counts[order][:, None])


_LEVEL_CENTRES = ((np.arange(_LEVELS) << (8 - _BITS)) + (1 << (8 - _BITS - 1))).astype(np.float64)


def _squared_distances(colours) -> np.ndarray:
    """Squared distance from the centre colour of every 5-bit bin (in quantised order)
    to the nearest of ``colours`` ``(k, 3)``; inf when there are none.

    Squared distances add over channels, so each colour costs one broadcast sum of three
    32-entry vectors into the 32x32x32 cube (no per-bin colour arithmetic).
    """
    best = np.full((_LEVELS,) * 3, np.inf)
    for r, g, b in np.asarray(colours, np.float64).reshape(-1, 3):
        red_green = ((_LEVEL_CENTRES - r) ** 2)[:, None] + ((_LEVEL_CENTRES - g) ** 2)[None, :]
        np.minimum(best, red_green[:, :, None] + ((_LEVEL_CENTRES - b) ** 2)[None, None, :], out=best)
    return best.reshape(-1)


def build_lut(targets: dict[int, np.ndarray | list[np.ndarray]], palette: list[np.ndarray],
              max_distance: float = 150.0, exclusion: float = 45.0) -> np.ndarray:
    """Lookup table from a quantised colour to a label (0 scene, else a target's label).

    A colour gets a target's label when it is nearer that target (one colour or a list
    of colours) than any scene colour and within ``max_distance``. Scene colours within ``exclusion`` of a target are not
    used as competitors (the target's own colour must never lose to itself).
    """
    target_colours = {k: np.asarray(v, np.float64).reshape(-1, 3) for k, v in targets.items()}
    every_target = np.concatenate(list(target_colours.values()))
    competitors = [np.asarray(c, np.float64) for c in palette
                   if np.linalg.norm(every_target - np.asarray(c, np.float64), axis=1).min() > exclusion]
    # Squared distances order colours as distances do (and need no square root).
    scene_d2 = _squared_distances(competitors)
    lut = np.zeros(len(scene_d2), np.uint8)
    best = np.full(len(scene_d2), np.inf)
    for label, colours in target_colours.items():
        d2 = _squared_distances(colours)
        win = (d2 < scene_d2) & (d2 < max_distance ** 2) & (d2 < best)
        lut[win] = label
        best = np.where(win, d2, best)
    return lut


def target_pixels(frames: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``frames[..., 0]`` (ascending) and labels of every pixel whose
    colour ``lut`` gives a target's label.

    Looking every pixel up would cost a quantisation and a gather per pixel; instead, per
    chunk of frames, ``cv2.inRange`` keeps the pixels inside the bounding box of the
    colours that map to a target (the agent's few hundred pixels, in practice), and only
    those are looked up: the same labels, at a fraction of the cost. With two targets
    (sokoban) one box around both serves when frame 0 shows it to keep hardly more
    pixels than the two boxes do (one pass instead of two).
    """
    t, h, w = frames.shape[:3]
    shift = 8 - _BITS
    boxes = []
    for label in np.unique(lut[lut > 0]):
        codes = np.flatnonzero(lut == label)
        channels = np.stack([codes >> (2 * _BITS), (codes >> _BITS) & (_LEVELS - 1), codes & (_LEVELS - 1)], 1)
        boxes.append((tuple(float(v << shift) for v in channels.min(0)),
                      tuple(float((v << shift) + (1 << shift) - 1) for v in channels.max(0))))
    if len(boxes) > 1:
        union = (tuple(np.min([lower for lower, _ in boxes], axis=0).tolist()),
                 tuple(np.max([upper for _, upper in boxes], axis=0).tolist()))
        share = [np.count_nonzero(cv2.inRange(frames[0], *box)) / (h * w) for box in [union, *boxes]]
        # A pass costs ~1 ns per pixel, looking a kept pixel up ~20: one box is cheaper
        # while it keeps fewer than 5 % more of the pixels per extra pass saved.
        if share[0] - sum(share[1:]) < 0.05 * (len(boxes) - 1):
            boxes = [union]

    def scan(lo: int, hi: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        found_idx, found_lab = [], []
        for i in range(lo, hi, _FRAME_CHUNK):
            tall = np.ascontiguousarray(frames[i:min(i + _FRAME_CHUNK, hi)]).reshape(-1, w, 3)  # frames stacked
            inside = cv2.inRange(tall, *boxes[0])
            for lower, upper in boxes[1:]:
                inside |= cv2.inRange(tall, lower, upper)
            idx = _nonzero(inside.reshape(-1))
            if len(idx) == 0:
                continue
            labels = lut[_quantise(tall.reshape(-1, 3)[idx])]
            keep = labels > 0
            found_idx.append(idx[keep] + i * h * w)
            found_lab.append(labels[keep])
        return found_idx, found_lab

    found_idx, found_lab = [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    for part_idx, part_lab in map_chunks(scan, t, min_size=_FRAME_CHUNK) if boxes else ():  # one part per core
        found_idx += part_idx
        found_lab += part_lab
    return np.concatenate(found_idx), np.concatenate(found_lab)


def _nonzero(flat: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a mostly-zero uint8 array, ~5x faster: 8 bytes are tested
    at a time (as one uint64) and only the words that hold something are looked into."""
    whole = len(flat) // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    idx = (words[:, None] * 8 + np.arange(8)).ravel()
    idx = idx[flat[idx] != 0]
    return np.concatenate([idx, whole + np.flatnonzero(flat[whole:])]) if whole < len(flat) else idx


def scene_palette(spec: dict, first: np.ndarray, ignore: np.ndarray) -> list[np.ndarray]:
    """The scene's colours: the spec's, then frame 0's dominant ones outside ``ignore``."""
    palette = [np.asarray(c, float) for c in spec.get("colors", {}).values()
               if isinstance(c, (list, tuple)) and len(c) == 3]
    return palette + dominant_colours(first, ignore=ignore)


def seen_colour(first: np.ndarray, center, size_w: float, colour: np.ndarray, palette: list[np.ndarray],
                margin: float = 60.0) -> np.ndarray | None:
    """The object's colour as frame 0 shows it (compression, jitter and blur shift it),
    when it is distinct from every scene colour; else ``None``."""
    inside = disk(first.shape[:2], center, max(1.0, 0.5 * size_w))
    pixels = first[inside].astype(float)
    if len(pixels) == 0:
        return None
    d = np.linalg.norm(pixels - colour, axis=1)
    best = pixels[np.argsort(d)[: max(1, len(pixels) // 3)]]
    seen = np.median(best, axis=0)
    if palette and min(np.linalg.norm(seen - np.asarray(c, float)) for c in palette) <= margin:
        return None
    return seen


def disk(shape: tuple[int, int], center, radius: float) -> np.ndarray:
    """``(H, W)`` bool: the pixels within ``radius`` of ``center`` (pixel indices as coordinates)."""
    h, w = shape
    yy, xx = np.ogrid[:h, :w]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius ** 2


def components(pixels: np.ndarray, shape: tuple[int, int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: (areas (k,), centroids (k, 2)) of the 8-connected components of a mask
    given as the ascending flat indices ``pixels`` of its True pixels in a ``shape``
    ``(T, H, W)`` array.

    All frames go through one OpenCV call on a compact image. Rows without mask pixels
    are left out: a *band* of consecutive rows of one frame is kept whole, with a blank
    row between bands. Within a band, columns without mask pixels are left out too, with
    a blank column where the kept ones are not consecutive. Neither step joins or splits
    a component (pixels are neighbours in the compact image exactly when they were in
    the frame), and the agent fills a small box of each frame, so the image labelled is
    a few times the mask's own size, not T full frames. Areas and centroids are counted
    back in frame coordinates.
    """
    t, h, w = shape
    none = (np.zeros(0), np.zeros((0, 2)))  # one shared, read-only "no component" entry
    out = [none] * t
    if len(pixels) == 0:
        return out
    row_of_pixel = pixels // w  # frame * h + row, non-decreasing
    col = pixels % w
    new_row = np.ones(len(pixels), bool)
    new_row[1:] = row_of_pixel[1:] != row_of_pixel[:-1]
    rows = row_of_pixel[new_row]  # the rows that hold mask pixels, ascending
    pixel_row = np.cumsum(new_row) - 1
    starts_band = np.ones(len(rows), bool)
    starts_band[1:] = rows[1:] != rows[:-1] + 1
    starts_band |= rows % h == 0  # a band never runs into the next frame
    band_of_row = np.cumsum(starts_band) - 1
    compact_row = np.arange(len(rows)) + band_of_row + 1  # a blank row before each band
    # Compact columns per band: a used column follows the previous used one directly
    # when they were neighbours, else after one blank column.
    band = band_of_row[pixel_row]
    used = np.zeros((band_of_row[-1] + 1, w), bool)
    used[band, col] = True
    left_used = np.zeros_like(used)
    left_used[:, 1:] = used[:, :-1]
    earlier = np.cumsum(used, axis=1) > used  # some used column lies to the left
    compact_col = np.cumsum(used.astype(np.int32) + (used & ~left_used & earlier), axis=1) - 1
    pixel_col = compact_col[band, col]
    image = np.zeros((compact_row[-1] + 2, int(pixel_col.max()) + 2), np.uint8)
    image[compact_row[pixel_row], pixel_col] = 1
    n, _, stats, cents = cv2.connectedComponentsWithStats(image, connectivity=8)
    if n <= 1:
        return out
    # Back to frame coordinates: a component lies in one band, where rows are shifted by
    # the band's offset, and its columns are a run of consecutive used columns, shifted
    # by one amount too (read at its left edge).
    band_of_compact = np.full(len(image), -1)
    band_of_compact[compact_row] = band_of_row
    row_shift = np.zeros(len(image))
    row_shift[compact_row] = compact_row - rows % h
    used_band, used_col = np.nonzero(used)
    col_of_compact = np.zeros(used.shape[:1] + image.shape[1:], np.int64)
    col_of_compact[used_band, compact_col[used_band, used_col]] = used_col
    top, left = stats[1:, cv2.CC_STAT_TOP], stats[1:, cv2.CC_STAT_LEFT]
    comp_band = band_of_compact[top]
    areas = stats[1:, cv2.CC_STAT_AREA].astype(float)
    cents = np.stack([cents[1:, 0] + (col_of_compact[comp_band, left] - left), cents[1:, 1] - row_shift[top]], 1)
    frame = (rows // h)[np.searchsorted(compact_row, top)]
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(t + 1))
    for k in range(t):
        idx = order[bounds[k]:bounds[k + 1]]
        out[k] = (areas[idx], cents[idx])
    return out
