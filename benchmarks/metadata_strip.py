"""What metadata stripping costs per image, against decoding it (the check every image gets
anyway), in the same process:

    .venv/bin/python benchmarks/metadata_strip.py [--repeats 5]

For PNG, JPEG and WebP images of 512, 1024 and 2048 px (noisy gradients, as photos compress),
prints one JSON object: the file size, the median milliseconds of Pillow's full decode
(Image.open + load), of media.metadata.strip_metadata, and their ratio. PNG stripping
inflates the image stream once more (to prove nothing follows it), which is why it costs
most.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from media.metadata import strip_metadata  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    for side in (512, 1024, 2048):
        ramp = np.linspace(0, 190, side, dtype=np.uint8)[None, :, None]
        pixels = (rng.random((side, side, 3)) * 60).astype(np.uint8) + ramp
        for kind, options in (("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"quality": 90})):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, kind, **options)
            data = buffer.getvalue()

            def decode(data=data):
                Image.open(io.BytesIO(data)).load()

            decode_ms = median_ms(decode, args.repeats)
            strip_ms = median_ms(lambda data=data, kind=kind: strip_metadata(data, kind),
                                 args.repeats)  # fmt: skip
            results[f"{kind} {side}px"] = {
                "kib": len(data) // 1024, "decode_ms": decode_ms, "strip_ms": strip_ms,
                "strip_over_decode": round(strip_ms / decode_ms, 3),
            }  # fmt: skip
    print(json.dumps({"repeats": args.repeats, "images": results}, indent=1))


if __name__ == "__main__":
    main()
