"""What the CNN re-check of HOG face boxes (agecurriculum.inference.FaceVerifier) costs: true faces lost, and time.

    python benchmarks/face_verification.py --folders ../shared/data/fairface/val ../shared/data/morph2/images \
        --images 300

For a seeded random sample of each folder's images (photos of real faces), runs dlib's HOG detector as
``agecurriculum predict`` does (FaceAligner, upsample 1) and re-checks every box with FaceVerifier. Every HOG box
in these photos is taken to be a true face, so a rejected box counts as a lost true face (``--list-rejected``
prints them to look at). It then does the same on scikit-image's sample photos without faces plus the astronaut,
where the HOG detector's false boxes are the ones to reject, and times dlib's CNN detector on whole images for
comparison. Nothing is written. Times depend on the machine and its load: report them with the machine.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import dlib
import numpy as np
from skimage import data as skdata

from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.inference.verify import FaceVerifier, VerifyConfig, cnn_model_path

# scikit-image sample images that ship with it (the others need pooch and the network); only the astronaut
# shows a face.
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cat",
    "camera",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "logo",
    "horse",
    "moon",
    "clock",
    "coins",
    "microaneurysms",
    "cell",
)
ASTRONAUT_FACE = (175, 76, 266, 167)


def rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def check(images, aligner: FaceAligner, verifier: FaceVerifier) -> dict:
    """HOG-detects and verifies every (name, image); returns counts, times and the rejected boxes."""
    n = boxes = 0
    detect_s = verify_s = 0.0
    rejected, kept = [], []
    for name, image in images:
        n += 1
        start = time.perf_counter()
        faces = aligner.detect(image)
        detect_s += time.perf_counter() - start
        for face in faces:
            boxes += 1
            start = time.perf_counter()
            ok = verifier.is_face(image, face.box)
            verify_s += time.perf_counter() - start
            (kept if ok else rejected).append((name, face.box, face.score))
    return {"images": n, "boxes": boxes, "rejected": rejected, "kept": kept, "detect_s": detect_s, "verify_s": verify_s}


def sample(folder: Path, count: int, seed: int):
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    random.Random(seed).shuffle(files)
    for path in files[:count]:
        try:
            yield path.name, load_image(path)
        except ImageLoadError as err:
            print(f"skipped {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="*", type=Path, default=[], help="folders of real face photos")
    parser.add_argument("--images", type=int, default=300, help="images sampled per folder")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--cnn-whole",
        type=int,
        default=20,
        help="images per folder to time dlib's CNN detector on, whole (upsample 1, like HOG)",
    )
    parser.add_argument("--list-rejected", action="store_true", help="print every rejected box")
    parser.add_argument("--face-size", type=int, default=VerifyConfig.face_size, help="VerifyConfig.face_size")
    parser.add_argument("--margin", type=float, default=VerifyConfig.margin, help="VerifyConfig.margin")
    args = parser.parse_args()

    aligner = FaceAligner(AlignConfig(upsample=1))
    verifier = FaceVerifier(VerifyConfig(face_size=args.face_size, margin=args.margin))
    verifier.is_face(rgb(skdata.astronaut()), ASTRONAUT_FACE)  # load the CNN outside the timings
    cnn = dlib.cnn_face_detection_model_v1(str(cnn_model_path()))
    print(f"dlib {dlib.__version__}, {verifier.config}")
    print()
    print(
        "| images | n | HOG boxes | rejected by the CNN | HOG s/image | check s/box | images/s HOG only | "
        "images/s HOG + check | CNN whole image s/image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [(str(folder), lambda folder=folder: sample(folder, args.images, args.seed)) for folder in args.folders]
    rows.append(("scikit-image samples", lambda: ((n, rgb(getattr(skdata, n)())) for n in SKIMAGE_PHOTOS)))
    all_rejected = {}
    for label, images in rows:
        r = check(images(), aligner, verifier)
        whole = []
        for _, image in list(images())[: args.cnn_whole]:
            start = time.perf_counter()
            cnn(image, 1)
            whole.append(time.perf_counter() - start)
        all_rejected[label] = r
        per_box = r["verify_s"] / r["boxes"] if r["boxes"] else float("nan")
        print(
            f"| {label} | {r['images']} | {r['boxes']} | {len(r['rejected'])} | {r['detect_s'] / r['images']:.3f} | "
            f"{per_box:.3f} | {r['images'] / r['detect_s']:.1f} | "
            f"{r['images'] / (r['detect_s'] + r['verify_s']):.1f} | {f'{np.mean(whole):.3f}' if whole else '-'} |"
        )
    print()
    for label, r in all_rejected.items():
        if args.list_rejected or label == "scikit-image samples":
            for name, box, score in r["rejected"]:
                print(f"rejected in {label}: {name} box {box} HOG score {score:.2f}")
            if label == "scikit-image samples":
                for name, box, score in r["kept"]:
                    print(f"kept in {label}: {name} box {box} HOG score {score:.2f}")


if __name__ == "__main__":
    main()
