"""Scale plan arithmetic: GPUs, hours and storage for a corpus of pages and video.

Every number comes from the inputs below (all options), so anyone can change an assumption
and rerun. Nothing is measured here; docs/scaling.md says which inputs were measured and which
are estimates. Prints Markdown tables (the ones in docs/scaling.md are this script's output).

Example:
    python bench/scale_plan.py
    python bench/scale_plan.py --pages 50e6 --images-per-s 80 --gpus 16
"""

from __future__ import annotations

import argparse

DIMS = (2048, 1024, 512, 256, 128)
PRECISIONS = {"float32": 32, "int8": 8, "ubinary": 1}  # bits per dimension


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--pages", type=float, default=10e6, help="document pages (default 10M)")
    a("--page-pixels", type=int, default=1_843_200, help="vision budget per page (default 1.8 MP)")
    a("--text-tokens", type=int, default=40, help="template + text-layer tokens per page or segment besides vision")
    a("--video-hours", type=float, default=10_000, help="hours of video (default 10k)")
    a("--segment-s", type=float, default=30, help="segment length in seconds (default 30)")
    a("--video-fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    a("--frame-pixels", type=int, default=1280 * 720, help="source frame size in pixels (default 720p)")
    a("--video-total-pixels", type=int, default=7_864_320, help="pixel budget per video clip (default 7,864,320)")
    a("--video-max-frame-pixels", type=int, default=768 * 32 * 32, help="cap on one frame (default 786,432)")
    a("--images-per-s", type=float, nargs=2, default=(100.0, 127.0), metavar=("LOW", "HIGH"),
      help="per-GPU throughput ceiling, images/s (project estimate for Qwen3-VL-2B on an H100)")
    a("--tokens-per-image", type=int, default=1280, help="tokens per image of that ceiling (default 1,280)")
    a("--gpus", type=int, nargs="+", default=[1, 8, 32, 64], help="GPU counts for the wall-clock table")
    a("--index-bytes-per-row", type=int, default=8, help="row id etc. per vector in the index (default 8)")
    return p.parse_args(argv)


def tokens_per_segment(args: argparse.Namespace) -> tuple[int, int, int]:
    """(frames, pixels per frame, tokens) of one segment: qwen-vl-utils' budget rule (frame pixels =
    min(source, max frame, 2 x total / frames)), 32 x 32 pixels per token, two frames per temporal patch."""
    frames = max(2, round(args.segment_s * args.video_fps))
    frames += frames % 2
    per_frame = min(args.frame_pixels, args.video_max_frame_pixels, 2 * args.video_total_pixels // frames)
    return frames, per_frame, (frames // 2) * (per_frame // 1024) + args.text_tokens


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def size(n_bytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes / 1e3:,.1f} kB"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    page_tokens = args.page_pixels // 1024 + args.text_tokens
    segments = args.video_hours * 3600 / args.segment_s
    frames, frame_px, segment_tokens = tokens_per_segment(args)
    low, high = (rate * args.tokens_per_image for rate in args.images_per_s)  # tokens/s per GPU

    print("## Inputs\n")
    print(table(["input", "value"], [
        ["pages", f"{args.pages:,.0f}"],
        ["tokens per page", f"{page_tokens:,} ({args.page_pixels:,} px / 1,024 + {args.text_tokens} text)"],
        ["video", f"{args.video_hours:,.0f} h in {args.segment_s:g} s segments = {segments:,.0f} segments"],
        ["tokens per segment", (f"{segment_tokens:,} ({frames} frames of {frame_px:,} px, 2 frames per token row, "
                                f"+ {args.text_tokens} text)")],
        ["per-GPU throughput (estimate)", (f"{args.images_per_s[0]:g}-{args.images_per_s[1]:g} images/s x "
                                           f"{args.tokens_per_image:,} tokens = {low:,.0f}-{high:,.0f} tokens/s")],
    ]))

    print("\n## Embedding compute (one pass, tokens/s held constant)\n")
    rows, jobs = [], [("pages", args.pages, page_tokens), ("video segments", segments, segment_tokens)]
    for name, count, tokens in jobs:
        total = count * tokens
        gpu_h = (total / high / 3600, total / low / 3600)
        rows.append([name, f"{count:,.0f}", f"{tokens:,}", f"{total / 1e9:,.1f} B",
                     f"{low / tokens:,.0f}-{high / tokens:,.0f}",
                     f"{gpu_h[0]:,.0f}-{gpu_h[1]:,.0f}"])
    total_tokens = sum(c * t for _, c, t in jobs)
    rows.append(["total", "", "", f"{total_tokens / 1e9:,.1f} B", "",
                 f"{total_tokens / high / 3600:,.0f}-{total_tokens / low / 3600:,.0f}"])
    print(table(["corpus", "items", "tokens/item", "tokens", "items/s per GPU", "GPU-hours"], rows))

    print("\n## Wall clock by GPU count (embedding only, perfect scaling)\n")
    rows = []
    for n in args.gpus:
        hours = [total_tokens / rate / 3600 / n for rate in (high, low)]
        rows.append([str(n), f"{hours[0]:,.1f}-{hours[1]:,.1f} h", f"{hours[0] / 24:,.2f}-{hours[1] / 24:,.2f} d"])
    print(table(["GPUs", "hours", "days"], rows))

    print("\n## Vector storage (vectors only)\n")
    rows = []
    for dim in DIMS:
        row = [str(dim)]
        for bits in PRECISIONS.values():
            per = dim * bits / 8
            row += [f"{per:,.0f} B", size(per * args.pages), size(per * segments)]
        rows.append(row)
    headers = ["dim"] + [f"{p} {what}" for p in PRECISIONS for what in ("per vector", "pages", "segments")]
    print(table(headers, rows))

    print("\n## With an IVF_SQ index (raw float32 vectors kept for refinement + int8 copy + row ids)\n")
    rows = []
    for dim in DIMS:
        per = dim * 4 + dim + args.index_bytes_per_row
        rows.append([str(dim), f"{per:,} B", size(per * args.pages), size(per * segments),
                     size(per * (args.pages + segments))])
    print(table(["dim", "per vector", "pages", "segments", "total"], rows))


if __name__ == "__main__":
    main()
