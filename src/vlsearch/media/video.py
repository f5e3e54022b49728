"""Videos with PyAV: probe, decode the sampled frames, resize within the pixel budgets.

Frame selection and resizing follow qwen-vl-utils exactly (the same ``smart_nframes``
and ``smart_resize``, evenly spaced frame indices, bicubic antialiased resize), so a
video gives the model the same pixels as the official pipeline, without its silent
fallbacks: an unreadable video is a ``MediaError`` naming the source.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MediaError
from .images import MediaLimits, check_size, describe, local_file, read_source


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream.

    ``first_pts`` is the earliest presentation timestamp of its packets, in the stream's
    time base (``None`` when they carry none): the time of the first frame.
    """

    frames: int
    fps: float
    seconds: float
    width: int
    height: int
    first_pts: int | None = None


@dataclass
class SampledVideo:
    """Frames chosen for the model: ``frames`` is uint8 (T, C, H, W) before resizing."""

    frames: Any
    fps: float
    indices: list[int]
    total_frames: int

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata dict the Qwen3-VL processor needs for frame timestamps."""
        return {"fps": self.fps, "frames_indices": self.indices, "total_num_frames": self.total_frames,
                "video_backend": "pyav"}


def _open(data: bytes | Path, name: str):
    """A PyAV input container on bytes or a local file (streamed, not read whole)."""
    import av

    try:
        container = av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise MediaError(f"{name}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{name}: no video stream")
    return container


def probe(src: Any, limits: MediaLimits | None = None) -> VideoInfo:
    """Count the frames of the first video stream (demuxing only, no decoding).

    A local file is streamed from disk; other sources are read into memory first.

    Example:
        >>> probe("clip.mp4").seconds
        12.0
    """
    limits = limits or MediaLimits()
    name = describe(src)
    local = local_file(src, limits)
    return _probe(local if local is not None else read_source(src, limits), name, limits)


def open_video(src: Any, limits: MediaLimits | None = None) -> Any:
    """A PyAV input container on a video, with at least one video stream (the caller closes it).

    A local file is streamed from disk; other sources are read into memory first.
    """
    limits = limits or MediaLimits()
    local = local_file(src, limits)
    return _open(local if local is not None else read_source(src, limits), describe(src))


def _probe(data: bytes | Path, name: str, limits: MediaLimits) -> VideoInfo:
    import av

    with _open(data, name) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise MediaError(f"{name}: unknown frame rate")
        fps = float(rate)
        check_size(name, stream.codec_context.width, stream.codec_context.height, limits)
        frames, first_pts = 0, None
        try:
            for packet in container.demux(stream):
                if packet.size:
                    frames += 1
                    if packet.pts is not None and (first_pts is None or packet.pts < first_pts):
                        first_pts = packet.pts
                    if frames > limits.max_video_frames or frames / fps > limits.max_video_seconds:
                        raise MediaError(f"{name}: longer than the limit of {limits.max_video_frames} frames "
                                         f"or {limits.max_video_seconds:.0f} s")
        except av.error.FFmpegError as exc:
            raise MediaError(f"{name}: corrupt or truncated video ({exc})") from None
        if frames == 0:
            raise MediaError(f"{name}: video has no frames")
        if stream.frames and frames < stream.frames:
            raise MediaError(f"{name}: truncated video (the container lists {stream.frames} frames, "
                             f"only {frames} are present)")
        return VideoInfo(frames, fps, frames / fps, stream.codec_context.width, stream.codec_context.height,
                         first_pts)


def sample_video(src: Any, fps: float, max_frames: int, limits: MediaLimits | None = None) -> SampledVideo:
    """Decode the frames qwen-vl-utils would pick for ``fps`` and ``max_frames``.

    Returns:
        A ``SampledVideo`` with uint8 frames of shape (T, 3, H, W), T even.
    """
    import av
    import torch
    from qwen_vl_utils.vision_process import smart_nframes

    limits = limits or MediaLimits()
    name = describe(src)
    data = read_source(src, limits)
    info = _probe(data, name, limits)
    try:
        nframes = smart_nframes({"fps": fps, "max_frames": max_frames}, total_frames=info.frames,
                                video_fps=info.fps)
    except ValueError as exc:
        raise MediaError(f"{name}: too short to sample ({exc})") from None
    indices = torch.linspace(0, info.frames - 1, nframes).round().long().tolist()
    wanted: dict[int, list[int]] = {}
    for slot, index in enumerate(indices):
        wanted.setdefault(index, []).append(slot)
    out: list[np.ndarray | None] = [None] * nframes
    with _open(data, name) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for position, frame in enumerate(container.decode(stream)):
                if position in wanted:
                    array = frame.to_ndarray(format="rgb24")
                    for slot in wanted[position]:
                        out[slot] = array
                if position >= indices[-1]:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(f"{name}: corrupt or truncated video ({exc})") from None
    if any(frame is None for frame in out):
        raise MediaError(f"{name}: truncated video (fewer decodable frames than the container lists)")
    frames = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return SampledVideo(frames, info.fps, indices, info.frames)


def resize_frames(frames: Any, *, min_pixels: int | None, max_pixels: int | None, total_pixels: int,
                  factor: int = 32) -> Any:
    """Resize uint8 (T, C, H, W) frames to the per-frame budget qwen-vl-utils derives.

    The per-frame cap is ``min(768 tokens, total_pixels / T * 2)``, never below 1.05 x the
    frame minimum (128 tokens), and never above ``max_pixels`` when given. Returns float32.
    """
    from qwen_vl_utils.vision_process import (FRAME_FACTOR, VIDEO_MAX_TOKEN_NUM, VIDEO_MIN_TOKEN_NUM,
                                              smart_resize)
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    count, _, height, width = frames.shape
    floor = min_pixels if min_pixels is not None else VIDEO_MIN_TOKEN_NUM * factor * factor
    cap = max(min(VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / count * FRAME_FACTOR), int(floor * 1.05))
    if max_pixels is not None:
        cap = min(cap, max_pixels)
    try:
        new_h, new_w = smart_resize(height, width, factor=factor, min_pixels=floor, max_pixels=cap)
    except (ValueError, AssertionError) as exc:
        raise MediaError(f"video frames of {width}x{height}: {exc}") from None
    return F.resize(frames, [new_h, new_w], interpolation=InterpolationMode.BICUBIC, antialias=True).float()
