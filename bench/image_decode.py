"""Speed of reading an image folder: fsq_lit's `image_data` against a plain Pillow loop, in one process.

    python bench/image_decode.py                      # 10,000 JPEG/PNG files of 96-320 px, to 64 px
    python bench/image_decode.py --files 2000 --size 32

It writes a folder of `--files` real photographs (scikit-image's bundled images cut into tiles of random sizes,
in the six modes of `photo_folder`: a third JPEG, the rest PNG) into a temporary folder, then times, in the same run:
  * the peer: a plain loop `Image.open(p).convert('RGB')`, resized and centre-cropped with `ImageOps.fit`, one process;
  * fsq_lit's first read: decoding in parallel and writing the checksummed cache;
  * fsq_lit's second read: the cache, verified.
It prints images/s of each and the ratios, and writes them with the machine and date to
`bench/results/cpu-image-decode.json` (or `--json PATH`).
"""
import argparse, datetime, json, os, platform, shutil, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image, ImageOps
from fsq_lit import cache
from fsq_lit.sources import photo_folder, folder_files, image_data

RESULTS = Path(__file__).resolve().parent / 'results'


def pillow_loop(files, size: int) -> np.ndarray:
    "The peer: what a script would do without the book, one process."
    return np.stack([np.asarray(ImageOps.fit(Image.open(p).convert('RGB'), (size, size), Image.Resampling.BICUBIC)) for p in files])


def timed(fn):
    t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): pass
    return dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--files', type=int, default=10000)
    ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--json', default=None, help='result file (default: bench/results/cpu-image-decode.json)')
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='fsq-bench-'))
    try:
        folder = photo_folder(work / 'photos', per_class=a.files // 2, sizes=(96, 320))
        files, _ = folder_files(folder)
        data = dict(data=f'folder:{folder}', n=len(files), size=a.size, cache_dir=work / 'cache', progress=False)
        peer, t_peer = timed(lambda: pillow_loop(files, a.size))
        first, t_first = timed(lambda: image_data(**data))
        cache._VERIFIED.clear()   # the second read as a new process does it: the cache's checksums verified again
        second, t_second = timed(lambda: image_data(**data))
        assert np.array_equal(first['train_x'].numpy(), second['train_x'].numpy()) and len(peer) == len(first['train_x'])
        formats = {ext: sum(p.suffix == ext for p in files) for ext in ('.jpg', '.png')}
    finally: shutil.rmtree(work, ignore_errors=True)
    rate = lambda t: round(len(files) / t, 1)
    res = dict(benchmark='bench/image_decode.py', files=len(files), formats=formats, source_px=[96, 320], size=a.size,
               images_per_s={'pillow loop': rate(t_peer), 'image_data, first read': rate(t_first),
                             'image_data, cached': rate(t_second)},
               ratios={'first read / pillow loop': round(t_peer / t_first, 2), 'cached / pillow loop': round(t_peer / t_second, 2)},
               machine=machine(), date=datetime.date.today().isoformat())
    for k, v in res['images_per_s'].items(): print(f"  {k:<24} {v:10.1f} images/s")
    print(f"  first read {res['ratios']['first read / pillow loop']:.2f}x the Pillow loop, cached {res['ratios']['cached / pillow loop']:.1f}x")
    path = Path(a.json) if a.json else RESULTS / 'cpu-image-decode.json'
    path.write_text(json.dumps(res, indent=1) + '\n')
    print(f"  wrote {path}")


if __name__ == '__main__':
    main()
