"""Image tools for the thumbnails stream, pure Python on binary PPM (P6) files.

    python -m images thumbnail IMAGE OUT     # a box-filtered thumbnail, at most 32 px a side
    python -m images metadata IMAGE THUMB_DIR OUT   # size, mean colour, thumbnail size as JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

THUMB = 32


def read_ppm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    fields, position = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; whitespace-separated, '#' comments
        while data[position:position + 1].isspace():
            position += 1
        if data[position:position + 1] == b"#":
            position = data.index(b"\n", position) + 1
            continue
        end = position
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"{path.name}: not an 8-bit binary PPM (P6)")
    width, height = int(fields[1]), int(fields[2])
    pixels = data[position + 1:position + 1 + width * height * 3]
    if len(pixels) != width * height * 3:
        raise ValueError(f"{path.name}: truncated pixel data")
    return width, height, pixels


def write_ppm(path: Path, width: int, height: int, pixels: bytes) -> None:
    path.write_bytes(b"P6\n%d %d\n255\n" % (width, height) + pixels)


def thumbnail(image: Path, out: Path) -> None:
    width, height, pixels = read_ppm(image)
    scale = max(1, -(-max(width, height) // THUMB))
    tw, th = max(1, width // scale), max(1, height // scale)
    result = bytearray()
    for ty in range(th):
        for tx in range(tw):
            totals = [0, 0, 0]
            for y in range(ty * scale, ty * scale + scale):
                row = (y * width + tx * scale) * 3
                for channel in range(3):
                    totals[channel] += sum(pixels[row + channel:row + scale * 3:3])
            result += bytes(t // (scale * scale) for t in totals)
    write_ppm(out / f"{image.stem}.thumb.ppm", tw, th, bytes(result))


def metadata(image: Path, thumbs: Path, out: Path) -> None:
    width, height, pixels = read_ppm(image)
    count = width * height
    mean = [round(sum(pixels[c::3]) / count, 1) for c in range(3)]
    thumb = next(thumbs.glob("*.thumb.ppm"))
    tw, th, _ = read_ppm(thumb)
    (out / f"{image.stem}.json").write_text(json.dumps(
        {"image": image.name, "width": width, "height": height, "mean_rgb": mean,
         "thumbnail": {"file": thumb.name, "width": tw, "height": th}}, indent=2) + "\n")


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["thumbnail"] and len(argv) == 3:
            thumbnail(Path(argv[1]), Path(argv[2]))
        elif argv[:1] == ["metadata"] and len(argv) == 4:
            metadata(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (ValueError, OSError) as err:
        print(f"images: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
