"""Decode the frames of planned video segments, starting at a keyframe near the first one.

A planned frame number ``k`` stands for the time ``k / fps`` from the stream's start. A
decoded frame is placed in time by its timestamp (pts x time_base), and frame ``k`` is the
last decoded frame shown at or before ``(k + 0.5) / fps``. That rule depends only on the
frames near ``k / fps``, so a decode that seeks to the keyframe at or before a segment
picks exactly the frames a decode from the file's start picks: parts of a video can be
decoded independently and still give the same pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from PIL import Image

from ..errors import MediaError
from ..media.images import MediaLimits, describe
from ..media.video import open_video

__all__ = ["Segment", "decode_segments", "fit_pixels"]


@dataclass
class Segment:
    """A planned video segment.

    Attributes:
        start, end: seconds.
        indices: source frame numbers to keep, ascending, length >= 2 (frame k shows at k / fps).
        fps: the rate the kept frames represent.
    """

    start: float
    end: float
    indices: list[int]
    fps: float


def fit_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The image scaled down (bicubic, aspect kept) to at most ``max_pixels``; ``None`` keeps it."""
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (image.width * image.height))
    size = (max(1, math.floor(image.width * scale)), max(1, math.floor(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def decode_segments(path: Any, segments: list[Segment], fps: float, *, origin: int | None,
                    max_pixels: int | None, limits: MediaLimits | None = None) -> Iterator[tuple[Segment, list[Image.Image]]]:
    """The kept frames of consecutive ``segments``, as RGB images, segment by segment.

    Decoding starts at the keyframe at or before the first wanted frame (from the file's
    start when the seek fails or lands too late) and stops after the last one.

    Args:
        path: the video file.
        segments: ascending segments of one plan (see ``extractors.plan_segments``).
        fps: the source frame rate the plan was made with.
        origin: the first frame's timestamp (``VideoInfo.first_pts``); ``None``: the stream's start time.
        max_pixels: frames larger than this are scaled down.
        limits: file-size cap.

    Raises:
        MediaError: the video cannot be opened or decoded, or ends before a wanted frame.

    Example:
        >>> for segment, frames in decode_segments("talk.mp4", plan[3:5], info.fps, origin=info.first_pts,
        ...                                        max_pixels=None):
        ...     print(segment.start, len(frames))
    """
    if not segments:
        return
    name = describe(path)
    order = sorted({i for s in segments for i in s.indices})
    half = 0.5 / fps
    picker = _Picker(segments, max_pixels)
    pointer = 0
    previous: tuple[float, Any] | None = None  # the latest decoded frame: (time, frame)
    frames = _timed_frames(path, name, fps, origin, order[0] / fps - half, limits)
    try:
        for time, frame in frames:
            while pointer < len(order) and time > order[pointer] / fps + half:
                picker.keep(order[pointer], previous[1] if previous is not None else frame)
                pointer += 1
            if previous is None or time >= previous[0]:
                previous = (time, frame)
            yield from picker.finished()
            if picker.done:
                return
    finally:
        frames.close()
    for index in order[pointer:]:  # the end of the stream: the last frame stands for what follows it
        if previous is None or previous[0] < index / fps - half:
            raise MediaError(f"{name}: truncated video: no frame at {index / fps:.3f} s (frame {index}), "
                             f"which the container lists")
        picker.keep(index, previous[1])
    yield from picker.finished()


class _Picker:
    """Keeps the frames the segments want, and hands out each segment once all of its frames are in."""

    def __init__(self, segments: Sequence[Segment], max_pixels: int | None) -> None:
        self.segments, self.max_pixels = segments, max_pixels
        self.chosen: dict[int, Image.Image] = {}
        self.emitted = 0
        self._frame: Any = None  # the last frame converted, and its image (kept for several indices)
        self._image: Image.Image | None = None

    @property
    def done(self) -> bool:
        return self.emitted == len(self.segments)

    def keep(self, index: int, frame: Any) -> None:
        if self._image is None or self._frame is not frame:
            self._frame, self._image = frame, fit_pixels(frame.to_image(), self.max_pixels)
        self.chosen[index] = self._image

    def finished(self) -> Iterator[tuple[Segment, list[Image.Image]]]:
        while not self.done and self.segments[self.emitted].indices[-1] in self.chosen:
            segment = self.segments[self.emitted]
            yield segment, [self.chosen[i] for i in segment.indices]
            for i in segment.indices:
                self.chosen.pop(i, None)
            self.emitted += 1


def _timed_frames(path: Any, name: str, fps: float, origin: int | None, seek_to: float,
                  limits: MediaLimits | None) -> Iterator[tuple[float, Any]]:
    """Decoded frames with their time in seconds from ``origin`` (ticks), the first at or before
    ``seek_to`` (from the start when ``seek_to <= 0``).

    Some demuxers seek by decode time, which runs behind presentation time with B-frames:
    when a seek lands too late, it is tried again further back, then from the start.
    """
    import av

    targets = [t for t in (seek_to, seek_to - 1.0, seek_to - 10.0) if t > 0] + [None]
    for target in targets:
        seeking = target is not None
        with open_video(path, limits) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            base = stream.time_base
            if origin is None:
                origin = stream.start_time if stream.start_time is not None else 0
            if seeking:
                if base is None:
                    continue
                try:
                    container.seek(origin + math.floor(target / base), stream=stream, backward=True,
                                   any_frame=False)
                except av.error.FFmpegError:
                    continue  # cannot seek there: further back, or from the start
            last: float | None = None
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None and base is not None:
                        time: float | None = float((frame.pts - origin) * base)
                    elif last is not None:
                        time = last + 1 / fps  # no timestamp: the frame after the previous one
                    else:
                        time = None if seeking else 0.0
                    if seeking and last is None and (time is None or time > seek_to):
                        break  # landed after the wanted frame (or cannot tell): try further back
                    last = time
                    yield time, frame  # type: ignore[misc]
                else:
                    return
            except av.error.FFmpegError as exc:
                raise MediaError(f"{name}: corrupt or truncated video ({exc})") from None
