#!/usr/bin/env python3
"""Copies a folder of photos with the shorter side reduced to SIDE pixels (JPEG
quality 92), so a training set fits the device run's 64 MiB carry limit.
wgsparse finetune center-crops the square of the shorter side and resamples it
to 256 px (training at 224), so nothing it uses is lost at SIDE >= 256.
    python3 bench/shrink_photos.py SRC DST [SIDE=288]   (needs Pillow)"""
import os
import sys

from PIL import Image

src, dst = sys.argv[1], sys.argv[2]
side = int(sys.argv[3]) if len(sys.argv) > 3 else 288
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src)):
    if not name.lower().endswith((".png", ".jpg", ".jpeg")):
        continue
    im = Image.open(os.path.join(src, name)).convert("RGB")
    s = side / min(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    im.save(os.path.join(dst, os.path.splitext(name)[0] + ".jpg"), quality=92)
